"""Sweeps on a real SLURM cluster (tests/slurm/up.sh: slurmctld, slurmd, slurmdbd, munge, MariaDB on this machine),
through Hydra's submitit launcher: jobs that run, fail, are preempted and requeued, and a 2-task DDP job.

The cluster is brought up once for this module (idempotent; CI's .ci/run may have done it already). Where it cannot
be (not root, no apt-get, the daemons do not start) the tests skip with the reason, unless REQUIRE_SLURM_TESTS=1
(.ci/run sets it once it brought the cluster up): then that is a failure.
"""

from __future__ import annotations

import csv
import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, TINY, mlflow_runs, read_scalars, run_module, sweep_jobs, wandb_run

pytestmark = pytest.mark.slurm

SLURM_DIR = ROOT / "tests" / "slurm"
REQUIRED = os.environ.get("REQUIRE_SLURM_TESTS") == "1"
# Every test session holds a shared lock on this file while it uses the cluster: the last one out stops a cluster
# that a test session started (the marker), never one that .ci/run started.
USERS_LOCK = Path("/run/lenet5-test-slurm.users")
STARTED_BY_TESTS = Path("/run/slurm/started-by-tests")

# The test cluster's one node: no GPUs, 2 cores; 1 core per job, so that two jobs run side by side.
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "torch_threads=1",
]
QUIET = "callbacks.progress_bar.refresh_rate=0"
TRACKERS = all(importlib.util.find_spec(package) for package in ("mlflow", "wandb"))  # the trackers extra
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING"}


def command(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=False, capture_output=True, text=True, timeout=timeout)


def daemon_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> Iterator[None]:
    def unavailable(reason: str) -> None:
        if REQUIRED:
            pytest.fail(f"REQUIRE_SLURM_TESTS=1 but {reason}")
        pytest.skip(reason)

    was_up = daemon_alive(Path("/run/slurm/slurmctld.pid"))
    try:
        up = command("bash", str(SLURM_DIR / "up.sh"), timeout=900)  # a fresh machine: apt-get update + install
    except subprocess.TimeoutExpired:
        unavailable("tests/slurm/up.sh did not finish within 15 minutes")
    if up.returncode == 3:
        unavailable(f"no SLURM test cluster here: {up.stderr.strip()}")
    if up.returncode != 0:
        unavailable(f"tests/slurm/up.sh failed (exit {up.returncode}):\n{up.stderr[-3000:]}")
    if not was_up:
        STARTED_BY_TESTS.touch()
    with open(USERS_LOCK, "a") as users:
        fcntl.flock(users, fcntl.LOCK_SH)
        yield
        fcntl.flock(users, fcntl.LOCK_UN)
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another test session still uses the cluster; the last one stops it
        if STARTED_BY_TESTS.exists():
            down = command("bash", str(SLURM_DIR / "down.sh"), timeout=300)
            assert down.returncode == 0, down.stderr


# -- helpers: the sweep's SLURM jobs, as SLURM's own commands tell them -----------------------------------------------
def job_ids(sweep: Path) -> list[str]:
    """The SLURM job ids of a sweep's jobs: submitit keeps a folder per job, ``<array>_<task>`` (or ``<id>`` for a
    single job), with the job's pickled call in it; an array's own folder holds only its sbatch script."""
    found = [p.name for p in (sweep / ".submitit").iterdir() if (p / f"{p.name}_submitted.pkl").is_file()]
    return sorted(found, key=lambda j: [int(n) for n in j.split("_")])


def job_result(sweep: Path, job: str) -> object:
    """What the job handed back to the launching process: submitit's result file, ("success", Hydra's JobReturn)."""
    import cloudpickle

    with open(sweep / ".submitit" / job / f"{job}_0_result.pkl", "rb") as f:
        return cloudpickle.load(f)


def job_log(sweep: Path, job: str, task: int = 0) -> str:
    """What a job's task wrote on stderr (every run of it: a requeued job appends)."""
    return (sweep / ".submitit" / job / f"{job}_{task}_log.err").read_text()


def accounting(job: str, timeout: float = 120) -> list[tuple[str, str, str]]:
    """(job id, state, exit code) of every run of ``job`` and its array tasks, requeued runs included, once SLURM's
    accounting has them all finished (it lags the jobs by a second or two)."""
    deadline = time.monotonic() + timeout
    while True:
        result = command("sacct", "-n", "-P", "-X", "-D", "-j", job, "-o", "JobID,State,ExitCode")
        assert result.returncode == 0, result.stderr
        rows = [tuple(line.split("|")) for line in result.stdout.splitlines() if line]
        if rows and not any(state.split()[0] in ACTIVE for _, state, _ in rows):
            return rows  # type: ignore[return-value]
        assert time.monotonic() < deadline, f"sacct still shows {job} running after {timeout} s: {rows}"
        time.sleep(1)


def wait_until_gone(job: str, timeout: float = 300) -> None:
    """Until no run of ``job`` is pending or running (Hydra stops waiting at a job that crashed; the others go on)."""
    deadline = time.monotonic() + timeout
    while command("squeue", "-h", "-j", job, "-o", "%i").stdout.strip():
        if time.monotonic() > deadline:
            command("scancel", job)
            raise AssertionError(f"SLURM job {job} still queued or running after {timeout} s: cancelled")
        time.sleep(1)


def start_sweep(sweep: Path, *overrides: str) -> subprocess.Popen:
    """A Hydra multirun through the SLURM launcher, in the background; its output goes to <sweep>.log."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(f"{sweep}.log", "w") as log:  # the child keeps its own copy of the file
        argv = [sys.executable, "-m", "src.train", "-m", *LAUNCHER, QUIET, *overrides, f"hydra.sweep.dir={sweep}"]
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def slurm_state(sweep: Path) -> str:
    """What SLURM says of a stuck sweep: its jobs' states and pending reasons, the node's state, the jobs' log tails."""
    jobs = job_ids(sweep) if (sweep / ".submitit").is_dir() else []
    lines = [
        command("squeue", "-a", "-o", "%i %T %r %M %C %m").stdout,
        command("sinfo", "-N", "-o", "%N %T %C %e %E").stdout,
    ]
    for job in jobs:
        for log in sorted((sweep / ".submitit" / job).glob("*_log.*")):
            lines.append(f"--- {log.name}\n{log.read_text()[-1500:]}")
    return "\n".join(lines)


def finish(proc: subprocess.Popen, sweep: Path, timeout: float = 400) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        state = slurm_state(sweep)
        for job in job_ids(sweep):
            command("scancel", job)
        raise AssertionError(
            f"the sweep did not finish within {timeout} s:\n{Path(f'{sweep}.log').read_text()[-3000:]}\n{state}"
        ) from None
    return Path(f"{sweep}.log").read_text()


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the sweep ended ({proc.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


def states(rows: list[tuple[str, str, str]], job: str) -> list[str]:
    return [state.split()[0] for job_id, state, _ in rows if job_id == job]


# -- 1. a sweep of SLURM jobs, one of which fails ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grid(tmp_path_factory, data_dir) -> tuple[Path, str, list[tuple[str, str, str]]]:
    """relu, swish (not an activation: fails), tanh: three jobs of one job array, tiny budgets, recorded by every
    logger (MLflow's SQLite store beside the sweep)."""
    sweep = tmp_path_factory.mktemp("slurm") / "grid"
    trackers = ["logger=[tensorboard,mlflow,wandb]", f"paths.log_dir={sweep.parent}"] if TRACKERS else []
    proc = start_sweep(sweep, "model.activation=relu,swish,tanh", *TINY, "trainer.log_every_n_steps=1", *trackers)
    output = finish(proc, sweep)
    assert proc.returncode != 0, "Hydra exited 0 although a job failed"
    array = job_ids(sweep)[0].split("_")[0]
    wait_until_gone(array)
    return sweep, output, accounting(array)


def test_sweep_jobs_run_as_slurm_jobs_and_the_report_reads_them(grid):
    sweep, output, rows = grid
    array = job_ids(sweep)[0].split("_")[0]
    assert job_ids(sweep) == [f"{array}_0", f"{array}_1", f"{array}_2"], output[-3000:]
    assert states(rows, f"{array}_0") == states(rows, f"{array}_2") == ["COMPLETED"], rows
    for job in (sweep_jobs(sweep)[0], sweep_jobs(sweep)[2]):
        assert json.loads((job / "metrics.json").read_text())["status"] == "completed"
        assert (job / "checkpoints" / "last.ckpt").is_file() and list((job / "checkpoints").glob("best-*.ckpt"))
        assert {"val/acc", "train/loss", "test/acc"} <= set(read_scalars(job).Tags()["scalars"])
    result = run_module("src.report", str(sweep), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(sweep / "report.csv") as f:
        report = {r["model.activation"]: r["status"] for r in csv.DictReader(f)}
    assert report["relu"] == report["tanh"] == "completed" and report["swish"].startswith("FAILED"), report


def test_each_slurm_job_is_one_tracked_run_grouped_by_the_sweep(grid):
    """MLflow's experiment and W&B's group are the sweep; each job that ran is one run named by its folder, with its
    own recipe and final metrics."""
    if not TRACKERS:
        pytest.skip("the trackers extra is not installed (pip install -e '.[trackers]')")
    sweep, output, _ = grid
    runs = mlflow_runs(sweep.parent, sweep.name)  # the sweep folder is outside paths.log_dir: named by its name
    assert sorted(runs) == ["0_model.activation=relu", "2_model.activation=tanh"], output[-3000:]
    for job in (sweep_jobs(sweep)[0], sweep_jobs(sweep)[2]):
        found, recorded = runs[job.name], json.loads((job / "metrics.json").read_text())["metrics"]
        assert found.info.status == "FINISHED" and found.data.params["model.activation"] == job.name.split("=")[1]
        assert found.data.metrics["test/acc"] == pytest.approx(recorded["test/acc"], rel=1e-6)
        assert (wandb_run(job)["name"], wandb_run(job)["group"]) == (job.name, sweep.name)
        assert wandb_run(job)["last"]["test/acc"] == pytest.approx(recorded["test/acc"], rel=1e-6)


def test_a_failing_job_is_marked_failed_and_the_others_finish(grid):
    """The bad value fails the run, not the SLURM job: Hydra catches the run's error in the job and hands it back as the
    job's result (a failed JobReturn), so sacct says COMPLETED; the launching process raises it at the end (Hydra
    exits non-zero naming it), and the run folder and src.report say failed. (Exiting the job non-zero instead would
    abort an Optuna search at its first failed trial.)"""
    from hydra.core.utils import JobStatus

    sweep, output, rows = grid
    array = job_ids(sweep)[0].split("_")[0]
    assert states(rows, f"{array}_1") == ["COMPLETED"], rows
    outcome, job_return = job_result(sweep, f"{array}_1")
    assert outcome == "success" and job_return.status == JobStatus.FAILED
    assert "model.activation='swish'" in str(job_return._return_value)
    failed = json.loads((sweep_jobs(sweep)[1] / "metrics.json").read_text())
    assert failed["status"] == "failed" and "model.activation='swish'" in failed["error"]
    assert "model.activation='swish'" in output  # Hydra's own exit names the failed job's error
    assert json.loads((sweep_jobs(sweep)[2] / "metrics.json").read_text())["status"] == "completed"


# -- 2. preemption and requeue: the requeued job continues from its own checkpoint -----------------------------------
RECIPE = [
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=40",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=5",
]


@pytest.fixture(scope="module")
def requeued(tmp_path_factory, data_dir) -> dict:
    """One recipe three times (seed=7,7,7): job 0 runs undisturbed; job 1 gets SLURM's time-limit/preemption signal
    (USR2: what ``--signal=USR2@<signal_delay_s>`` sends, and preemption); job 2 is requeued by ``scontrol requeue``
    (SIGTERM: an operator's requeue). Each is signalled once its first epoch's checkpoint exists."""
    sweep = tmp_path_factory.mktemp("slurm") / "requeue"
    proc = start_sweep(sweep, "seed=7,7,7", *RECIPE)
    jobs = [sweep / f"{i}_seed=7" for i in range(3)]
    seen = {}
    for i, how in ((1, ["scancel", "--signal=USR2"]), (2, ["scontrol", "requeue"])):
        wait_for_file(jobs[i] / "checkpoints" / "last.ckpt", proc)
        job = f"{job_ids(sweep)[0].split('_')[0]}_{i}"
        assert command(*how, job).returncode == 0
        seen[i] = torch.load(jobs[i] / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    output = finish(proc, sweep)
    assert proc.returncode == 0, output[-3000:]
    array = job_ids(sweep)[0].split("_")[0]
    return {"sweep": sweep, "jobs": jobs, "array": array, "rows": accounting(array), "epoch_at_signal": seen}


def final(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def max_difference(a: dict, b: dict) -> float:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    return max((a["state_dict"][k].double() - b["state_dict"][k].double()).abs().max().item() for k in a["state_dict"])


def test_preempted_job_is_requeued_and_resumes_to_the_same_weights(requeued):
    sweep, (whole, preempted, _), array = requeued["sweep"], requeued["jobs"], requeued["array"]
    assert requeued["epoch_at_signal"][1] < 2, "the job had finished training before it was signalled"
    # SLURM's accounting: the first run was requeued, the second completed; the undisturbed job ran once
    assert states(requeued["rows"], f"{array}_1") == ["REQUEUED", "COMPLETED"], requeued["rows"]
    assert states(requeued["rows"], f"{array}_0") == ["COMPLETED"], requeued["rows"]
    log = job_log(sweep, f"{array}_1")
    # submitit's handler took the signal and requeued; the requeued run resumed from the epoch-end checkpoint
    assert "Caught signal SIGUSR2" in log and "this job is preempted" in log and f"Requeued job {array}" in log, log[
        -3000:
    ]
    assert f"Resuming from {preempted}/checkpoints/last.ckpt: SLURM requeued this job (SLURM_RESTART_COUNT=1)" in log
    # one requeue mechanism: Lightning's auto-requeue is off, so no hpc checkpoint and no second requeue
    assert "SLURM auto-requeueing enabled" not in log and not list(preempted.rglob("hpc_ckpt_*.ckpt"))
    a, b = final(whole), final(preempted)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (2, 120)
    assert max_difference(a, b) == 0.0, "the resumed job's weights differ from the undisturbed job's"
    ma, mb = (json.loads((j / "metrics.json").read_text()) for j in (whole, preempted))
    assert mb["status"] == "completed" and ma["metrics"]["test/acc"] == mb["metrics"]["test/acc"]


def test_preempted_jobs_history_is_intact(requeued):
    """Every epoch's validation metrics and the training curve's every step are there once, equal to the undisturbed
    job's; of the epoch the resumed checkpoint holds, the train metrics may differ (a checkpoint saved before that
    epoch's end holds its train metrics as they stood: src/training/lit_module.py)."""
    whole, preempted = requeued["jobs"][0], requeued["jobs"][1]
    ha, hb = (json.loads((j / "history.json").read_text()) for j in (whole, preempted))
    assert [r["epoch"] for r in ha] == [r["epoch"] for r in hb] == [0, 1, 2]
    resumed_at = requeued["epoch_at_signal"][1]
    kept = ("epoch", "step", "val/loss", "val/acc")
    for ra, rb in zip(ha, hb):
        assert {k: ra[k] for k in kept} == {k: rb[k] for k in kept}
        if ra["epoch"] != resumed_at:
            assert ra == rb
    # TensorBoard: the first run's event file and the requeued run's, read as one run (the re-done steps replace the
    # first run's), hold the undisturbed job's values at every step
    sa, sb = read_scalars(whole), read_scalars(preempted)
    for tag in ("train/loss", "val/acc", "val/loss"):
        assert [(e.step, e.value) for e in sa.Scalars(tag)] == [(e.step, e.value) for e in sb.Scalars(tag)], tag


def test_job_requeued_by_scontrol_resumes_from_its_stop_checkpoint(requeued):
    """``scontrol requeue`` sends SIGTERM: Lightning stops the job at the next batch and ResumableStopCheckpoint saves
    on_exception.ckpt; the requeued job resumes from it and trains to the end."""
    sweep, job, array = requeued["sweep"], requeued["jobs"][2], requeued["array"]
    assert states(requeued["rows"], f"{array}_2") == ["REQUEUED", "COMPLETED"], requeued["rows"]
    log = job_log(sweep, f"{array}_2")
    assert "Stopped by SIGTERM" in log and "a requeued SLURM job resumes from it by itself" in log, log[-3000:]
    assert f"Resuming from {job}/checkpoints/on_exception.ckpt: SLURM requeued this job (SLURM_RESTART_COUNT=1)" in log
    assert not (
        job / "checkpoints" / "on_exception.ckpt"
    ).exists()  # the finished run removed its stale stop checkpoint
    b = final(job)
    assert (b["epoch"], b["global_step"]) == (2, 120)
    assert [r["epoch"] for r in json.loads((job / "history.json").read_text())] == [0, 1, 2]
    assert json.loads((job / "metrics.json").read_text())["status"] == "completed"


def test_job_requeued_mid_epoch_reaches_the_same_weights(requeued):
    """scontrol requeue stops the job mid-epoch (SIGTERM: on_exception.ckpt); the requeued job starts that epoch at the
    batch it stopped at, so it ends where the undisturbed job does."""
    assert max_difference(final(requeued["jobs"][0]), final(requeued["jobs"][2])) == 0.0


# -- 3. DDP: one job, two tasks on the node ------------------------------------------------------------------------------
def test_ddp_job_with_two_tasks_trains_through_lightnings_slurm_environment(tmp_path: Path, data_dir):
    """trainer=ddp with 2 SLURM tasks: Lightning takes the ranks from SLURM (SLURM_PROCID, SLURM_NTASKS), the devices
    from the allocation (conf/trainer/ddp.yaml), gloo on CPU; one run folder."""
    overrides = ("trainer=ddp", "hydra.launcher.tasks_per_node=2", "hydra.launcher.mem_gb=4", *TINY)
    sweep = tmp_path / "ddp"
    proc = start_sweep(sweep, *overrides)
    output = finish(proc, sweep, timeout=150)  # 40 s alone, 84 s under the suite's full load
    assert proc.returncode == 0, output[-3000:]
    (job,) = job_ids(sweep)
    assert states(accounting(job), job) == ["COMPLETED"]
    assert "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2" in job_log(sweep, job, task=0)
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in job_log(sweep, job, task=1)
    assert "distributed_backend=gloo" in job_log(sweep, job, task=0)
    (run,) = sweep_jobs(sweep)  # one run folder for both ranks
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["status"] == "completed"
    matrix = summary["test_confusion_matrix"]  # 2 test batches of 500 on each rank, summed over both
    assert sum(map(sum, matrix)) == 2_000
    assert summary["metrics"]["test/acc"] == pytest.approx(sum(matrix[i][i] for i in range(10)) / 2_000, abs=1e-6)
    assert final(run)["global_step"] == 3  # 3 batches per rank: the ranks stepped together
    assert len(list(run.glob("events.out.tfevents.*"))) >= 1


# -- 3b. the controller restarted mid-sweep -----------------------------------------------------------------------------
def test_a_sweep_finishes_once_per_job_when_slurmctld_restarts_mid_way(tmp_path: Path, data_dir):
    """slurmctld stopped (SIGTERM: it saves its state) while the first jobs of a 4-job sweep run, and started again
    a few seconds later: the jobs go on under slurmd, submitit's polling outlives the gap, and the sweep finishes with
    each job run once, its result there once, and src.report reading all four."""
    sweep = tmp_path / "restart"
    proc = start_sweep(
        sweep,
        "seed=1,2,3,4",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=30",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
    )
    wait_for_file(sweep / "0_seed=1" / "checkpoints" / "last.ckpt", proc)
    controller = int(Path("/run/slurm/slurmctld.pid").read_text())
    os.kill(controller, 15)
    deadline = time.monotonic() + 30
    while daemon_alive(Path("/run/slurm/slurmctld.pid")):
        assert time.monotonic() < deadline, "slurmctld did not exit within 30 s of SIGTERM"
        time.sleep(0.2)
    assert command("scontrol", "ping").returncode != 0, "the controller still answers"
    time.sleep(5)  # the running jobs go on without it
    up = command("bash", str(SLURM_DIR / "up.sh"), timeout=300)
    assert up.returncode == 0, up.stderr[-3000:]
    assert "cancelled job" not in up.stdout, up.stdout

    output = finish(proc, sweep)
    assert proc.returncode == 0, output[-3000:]
    array = job_ids(sweep)[0].split("_")[0]
    wait_until_gone(array)
    rows = accounting(array)
    assert [states(rows, f"{array}_{i}") for i in range(4)] == [["COMPLETED"]] * 4, rows
    runs = sweep_jobs(sweep)
    assert [r.name for r in runs] == ["0_seed=1", "1_seed=2", "2_seed=3", "3_seed=4"]
    for run in runs:
        assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    result = run_module("src.report", str(sweep), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(sweep / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["seed"] for r in rows) == ["1", "2", "3", "4"] and {r["status"] for r in rows} == {"completed"}


# -- 4. a job lost with killed daemons: up.sh cancels it ---------------------------------------------------------------
def test_a_job_lost_with_killed_daemons_is_cancelled_when_the_cluster_comes_back(tmp_path: Path):
    """The daemons and the job's processes killed mid-job (a machine's session ends): slurmctld recovers the job from
    its saved state as RUNNING and never notices it is gone, so it holds a CPU for good; in CI (2026-12-03) such a job,
    left by an earlier session, kept the 2-task DDP job pending until it timed out. up.sh cancels it. Last in this
    module: it restarts the cluster's slurmctld and slurmd."""
    submitted = command(
        "sbatch", "--parsable", "-p", "debug", "-c", "1", "-o", str(tmp_path / "lost.out"), "--wrap", "sleep 613"
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    deadline = time.monotonic() + 60
    while not (stepd := command("pgrep", "-f", rf"^slurmstepd: \[{job}\.batch\]").stdout.split()):
        assert time.monotonic() < deadline, f"job {job} did not start within 60 s: {command('squeue').stdout}"
        time.sleep(0.2)
    for pid in [*stepd, *command("pgrep", "-f", "^sleep 613$").stdout.split()]:
        os.kill(int(pid), 9)
    os.kill(int(Path("/run/slurm/slurmd.pid").read_text()), 9)
    controller = int(Path("/run/slurm/slurmctld.pid").read_text())
    os.kill(controller, 15)  # slurmctld saves its state on SIGTERM: the job in it as RUNNING
    deadline = time.monotonic() + 30
    while daemon_alive(Path("/run/slurm/slurmctld.pid")):
        assert time.monotonic() < deadline, "slurmctld did not exit within 30 s of SIGTERM"
        time.sleep(0.2)
    up = command("bash", str(SLURM_DIR / "up.sh"), timeout=300)
    assert up.returncode == 0, up.stderr[-3000:]
    assert f"cancelled job {job}: running in SLURM's saved state, but no process of it on the node" in up.stdout
    wait_until_gone(job, timeout=60)
    assert states(accounting(job, timeout=60), job) == ["CANCELLED"]
