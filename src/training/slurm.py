"""SLURM: the cluster environment Lightning runs in, and whether the scheduler requeued this job."""

from __future__ import annotations

import os

from lightning.pytorch.plugins.environments import SLURMEnvironment, TorchElasticEnvironment


def requeue_count() -> int:
    """How many times the cluster scheduler has requeued this job (SLURM's restart count; 0 outside SLURM)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def slurm_environment() -> SLURMEnvironment | None:
    """Lightning's SLURM environment without its auto-requeue, inside a SLURM job step (else None: Lightning detects).

    Ranks, world size and the main address still come from SLURM's variables. The requeue is submitit's alone
    (hydra/launcher=slurm): its signal (USR2, ``signal_delay_s`` before the time limit, and on preemption) requeues
    the job within ``max_num_timeout``, and the requeued job resumes by src.training.resume.resolve_resume. Lightning's own
    auto-requeue would answer SIGUSR1 with a second requeue outside that count and an ``hpc_ckpt_<n>.ckpt`` that
    nothing resumes from (docs/cluster.md has what was seen on a real cluster).
    """
    # torchrun inside a SLURM allocation: Lightning gives TorchElastic priority, and so does this
    if TorchElasticEnvironment.detect() or not SLURMEnvironment.detect():
        return None
    return SLURMEnvironment(auto_requeue=False)
