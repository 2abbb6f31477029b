"""What the Hydra configs need from Python: the project's folders, the resolvers the configs use (registered on import,
before any entry point composes), and composing a config as an entry point does.

A composed config resolves with nothing else imported."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"
MNIST_SIDE = 28  # every MNIST and Fashion-MNIST image is 28x28


def padded_size(pad: int) -> int:
    """The side of the images the network sees: the 28 pixels padded by ``pad`` on each side (32 for pad 2)."""
    return MNIST_SIDE + 2 * pad


def padded_side(pad: object) -> int | None:
    """``${padded_side:${data.pad}}`` (conf/model/lenet5.yaml): the network's input side for ``data.pad``; None for a
    bad ``data.pad``, which the settings check names."""
    return padded_size(pad) if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0 else None


def fastest_precision(accelerator: str) -> str:
    """``${fastest_precision:${trainer.accelerator}}``: ``bf16-mixed`` where the device that will train has bfloat16
    arithmetic (a CPU with AVX-512 BF16 or AMX, a GPU that supports bf16), else ``32-true``: bf16 autocast is faster
    only with those instructions and slower without them (docs/speed.md)."""
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        # emulated bf16 (pre-Ampere GPUs) is slower than fp32: only the real thing counts
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        return "bf16-mixed" if bf16 else "32-true"
    cpu_has = [getattr(torch.cpu, f"_is_{name}_supported", lambda: False) for name in ("avx512_bf16", "amx_tile")]
    return "bf16-mixed" if any(has() for has in cpu_has) else "32-true"


def register_resolvers() -> None:
    # ${project_root:} makes default paths independent of the folder the user runs from;
    # ${pid:} keeps two runs started in the same second in separate folders.
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("pid"):
        # Cached: a sweep's folder is named once, by the launching process; Hydra hands the cache to joblib and
        # submitit workers (and a requeued SLURM job), which would otherwise resolve their own process id.
        OmegaConf.register_new_resolver("pid", lambda: str(os.getpid()), use_cache=True)
    # ${choice:optimizer} is the option a config group was given (sgd, adam): what the user typed, for TensorBoard.
    if not OmegaConf.has_resolver("choice"):
        OmegaConf.register_new_resolver("choice", group_choice)
    if not OmegaConf.has_resolver("sweep_job_dir"):
        OmegaConf.register_new_resolver("sweep_job_dir", sweep_job_dir)
    # ${log_name:${hydra.job.name},${hydra.job.config_name}}: "train" in a run's main process, "train_rank1" ... in
    # its other DDP processes: one log file each
    if not OmegaConf.has_resolver("log_name"):
        OmegaConf.register_new_resolver("log_name", log_name)
    if not OmegaConf.has_resolver("padded_side"):
        OmegaConf.register_new_resolver("padded_side", padded_side)
    if not OmegaConf.has_resolver("fastest_precision"):
        OmegaConf.register_new_resolver("fastest_precision", fastest_precision)
    if not OmegaConf.has_resolver("tracker_name"):
        OmegaConf.register_new_resolver("tracker_name", tracker_name)


def log_name(job_name: str, config_name: str) -> str:
    """The stem of this process's log file: the job's name, with ``_rank<k>`` in DDP process k > 0.

    Lightning starts the other processes of a single-node DDP run as ``hydra.job.name=train_ddp_process_<k>``
    whatever the entry point; their log is named for the entry point's config (``eval_rank1``, not
    ``train_ddp_process_1_rank1``). Processes that SLURM starts keep the job's own name."""
    if not (rank := process_rank()):
        return job_name
    if re.fullmatch(r"train_ddp_process_\d+", job_name):
        job_name = config_name
    return f"{job_name}_rank{rank}"


def process_rank() -> int:
    """This process's global rank in a multi-process (DDP) run started by SLURM, torchrun or Lightning; 0 otherwise."""
    for variable in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if (value := os.environ.get(variable, "")).isdigit():
            return int(value)
    return 0


def group_choice(group: str) -> str | None:
    """The option chosen for a config group in this Hydra run (None outside one, e.g. under Hydra's compose API)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def tracker_name(which: str, log_dir: str, task_name: str, output_dir: str) -> str:
    """``${tracker_name:group|run,${paths.log_dir},${task_name},${paths.output_dir}}`` (conf/logger/mlflow.yaml,
    wandb.yaml): the group (MLflow's experiment, W&B's group) and the name a tracker gives this run, as
    ``tensorboard --logdir outputs`` names it. A sweep's jobs are grouped by their sweep
    (``train/multiruns/<date>/<time>``) and named by their folders (``0_model.activation=tanh``); a single run is in
    its command's group (``train``) as ``runs/<date>/<time>`` (a folder outside paths.log_dir: by its name)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if which not in ("group", "run"):
        raise ValueError(f"tracker_name: {which!r} is not group or run")
    output, logs = Path(output_dir).absolute(), Path(log_dir).absolute()
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sweep = Path(HydraConfig.get().sweep.dir).absolute()
        group = str(sweep.relative_to(logs)) if sweep.is_relative_to(logs) else sweep.name
        return group if which == "group" else output.name
    runs = logs / task_name
    return (
        task_name if which == "group" else str(output.relative_to(runs) if output.is_relative_to(runs) else output.name)
    )


MAX_NAME = 200  # a folder name must stay under the file systems' 255 bytes


def sweep_job_dir(num: int, job_overrides: Iterable[str], sweep_dir: str) -> str:
    """A sweep job's folder name: its number, then the overrides that vary across the sweep (``1_model.activation=
    tanh,optimizer=adam``), so that TensorBoard, which names runs by folder, names them as the sweep does.

    The sweep's own command line (``multirun.yaml``, written by Hydra's basic sweeper before the jobs start) tells the
    overrides with one value, left out here; a sweeper that writes none (Optuna) gets all the job's overrides.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    constant: set[str] = set()
    sweep_file = Path(sweep_dir) / "multirun.yaml"
    if sweep_file.is_file():
        given = OmegaConf.select(OmegaConf.load(sweep_file), "hydra.overrides.task", default=[]) or []
        constant = {o.key_or_group for o in parser.parse_overrides(list(given)) if not o.is_sweep_override()}
    varying = [
        text
        for text, o in zip(job_overrides, parser.parse_overrides(list(job_overrides)))
        if o.key_or_group not in constant
    ]
    name = ",".join(varying).replace("/", "-")
    if len(name.encode()) > MAX_NAME:
        name = name.encode()[:MAX_NAME].decode(errors="ignore") + "..."
    return f"{num}_{name}" if name else str(num)


def compose_config(*overrides: str, config_name: str = "train") -> DictConfig:
    """The config an entry point (``config_name``) composes from these overrides: Hydra's compose API, as the
    benchmark, the notebook and the tests compose; without the ``hydra.*`` keys a run's own Hydra adds."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


register_resolvers()
