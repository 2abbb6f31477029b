"""MLflow and Weights & Biases beside TensorBoard (logger=[tensorboard,mlflow,wandb]), read back through each tool's
own reader: MLflow's MlflowClient on the SQLite store, W&B's offline run file parsed into W&B's own protobuf records,
TensorBoard's EventAccumulator. A real 1-epoch run and a real 2-job sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from src.core.runs import find_runs
from tests.helpers import (
    ROOT,
    SHORT,
    TINY,
    free_port,
    hparams_data,
    mlflow_artifacts,
    mlflow_client,
    mlflow_runs,
    read_scalars,
    run_module,
    start_after_first_checkpoint,
    sweep_jobs,
    wandb_run,
)

pytest.importorskip("mlflow", reason="the trackers extra is not installed (pip install -e '.[trackers]')")
pytest.importorskip("wandb", reason="the trackers extra is not installed (pip install -e '.[trackers]')")

ALL = "logger=[tensorboard,mlflow,wandb]"
QUIET = "callbacks.progress_bar.refresh_rate=0"
EVERY_STEP = "trainer.log_every_n_steps=1"
PICTURES = ["images/train_samples", "images/confusion_matrix", "images/worst_misclassified", "filters/conv1"]


class MLflowUI:
    """``mlflow ui --backend-store-uri sqlite:///<store>`` (the README's command) on 127.0.0.1, in its own process
    group; ``uri`` is its address, ``kill()`` stops it as a crash would."""

    def __init__(self, store: Path, cwd: Path) -> None:
        self.store, self.cwd, self.port = store, cwd, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MLflowUI:
        command = ["ui", "--backend-store-uri", f"sqlite:///{self.store}", "--host", "127.0.0.1"]
        self.log = open(self.cwd / "mlflow-ui.log", "w")  # noqa: SIM115 (closed in __exit__)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", *command, "--port", str(self.port), "--workers", "1"],
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.cwd / "mlflow-ui.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return self
            except OSError:  # not listening yet
                time.sleep(0.5)
        raise AssertionError(f"mlflow ui did not answer: {(self.cwd / 'mlflow-ui.log').read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self.log.close()


def assert_params_are_the_hparams_tab(params: dict[str, str], run: Path) -> None:
    """MLflow's params are the HPARAMS tab's columns with this run's values (as TensorBoard's reader reads them)."""
    shown = hparams_data(read_scalars(run), "session_start_info").hparams
    assert set(params) == set(shown), (sorted(params), sorted(shown))
    for key, value in shown.items():
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            assert float(params[key]) == value.number_value, key
        elif kind == "bool_value":
            assert params[key] == str(value.bool_value), key
        else:
            assert params[key] == value.string_value, key
    assert not [k for k in params if "_target_" in k or "dir" in k], params


def assert_same_final_metrics(run: Path, mlflow_metrics: dict[str, float], wandb_last: dict[str, Any]) -> None:
    record = json.loads((run / "metrics.json").read_text())["metrics"]
    for key in ("test/acc", "test/loss", "val/acc_best"):
        assert mlflow_metrics[key] == pytest.approx(record[key], rel=1e-6), key
        assert wandb_last[key] == pytest.approx(record[key], rel=1e-6), key


@pytest.fixture(scope="module")
def one_run(tmp_path_factory: pytest.TempPathFactory, data_dir) -> tuple[Path, Path]:
    log_dir = tmp_path_factory.mktemp("trackers") / "outputs"
    diagnostics = "callbacks.diagnostics.every_n_steps=1"  # gradient norms, activations, histograms: every step
    result = run_module("src.train", *TINY, QUIET, EVERY_STEP, ALL, diagnostics, f"paths.log_dir={log_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = find_runs(log_dir)
    return log_dir, run


def test_one_run_in_mlflow_has_the_recipe_the_metrics_and_the_pictures(one_run):
    log_dir, run = one_run
    name = str(run.relative_to(log_dir / "train"))  # runs/<date>/<time>_<pid>, as TensorBoard names it
    runs = mlflow_runs(log_dir, "train")
    assert list(runs) == [name]
    found = runs[name]
    assert found.info.status == "FINISHED"
    assert_params_are_the_hparams_tab(found.data.params, run)
    assert_same_final_metrics(run, found.data.metrics, wandb_run(run)["last"])
    history = mlflow_client(log_dir).get_metric_history(found.info.run_id, "train/loss")
    assert [m.step for m in history] == [0, 1, 2]  # each of the 3 steps, beside the epoch's train/loss_epoch
    artifacts = mlflow_artifacts(log_dir, found.info.run_id)
    for tag in PICTURES:
        assert any(a.startswith(f"{tag}/step_") and a.endswith(".png") for a in artifacts), (tag, artifacts)


def test_one_run_in_wandb_has_the_composed_config_and_the_pictures(one_run):
    log_dir, run = one_run
    found = wandb_run(run)
    assert found["name"] == str(run.relative_to(log_dir / "train")) and found["group"] == "train"
    composed = read_yaml(run / ".hydra" / "config.yaml")
    assert {k for k in found["config"] if not k.startswith("_")} == set(composed)
    assert found["config"]["optimizer"]["lr"] == composed["optimizer"]["lr"]
    assert found["config"]["seed"] == composed["seed"]
    for tag in PICTURES:
        assert found["last"][f"{tag}/_type"] == "images/separated", tag
        (picture,) = found["last"][f"{tag}/filenames"]
        assert (next(run.glob("wandb/offline-run-*")) / "files" / picture).is_file()


def test_the_diagnostics_reach_every_logger(one_run):
    """callbacks.diagnostics: the same gradient norms and activation statistics at the same steps in TensorBoard,
    MLflow and W&B; the weights' and gradients' histograms in TensorBoard and W&B (MLflow draws none)."""
    log_dir, run = one_run
    (found,) = mlflow_runs(log_dir, "train").values()
    events, last = read_scalars(run), wandb_run(run)["last"]
    for tag in (
        "diagnostics/grad_norm/total",
        "diagnostics/grad_norm/conv1.weight",
        "diagnostics/activations/fc1.act/dead",
    ):
        shown = [(e.step, e.value) for e in events.Scalars(tag)]
        history = mlflow_client(log_dir).get_metric_history(found.info.run_id, tag)
        assert [m.step for m in history] == [step for step, _ in shown] == [0, 1, 2], tag
        assert [m.value for m in history] == pytest.approx([value for _, value in shown], rel=1e-6), tag
        assert last[tag] == pytest.approx(shown[-1][1], rel=1e-6), tag
    histograms = events.Tags()["histograms"]
    for tag in ("diagnostics/weights/conv1.weight", "diagnostics/gradients/fc3.bias"):
        assert tag in histograms and last[f"{tag}/_type"] == "histogram", tag


def test_pictures_and_histograms_are_drawn_only_for_loggers_that_keep_them(tmp_path: Path):
    """logger=csv keeps neither (the callbacks then draw nothing); TensorBoard and W&B keep both; MLflow pictures."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from src.training.loggers import MLFlowLogger
    from src.training.trackers import keeps_histograms, keeps_pictures

    def trainer(*loggers: Any) -> L.Trainer:
        return L.Trainer(logger=list(loggers), enable_checkpointing=False, enable_progress_bar=False)

    csv, board = CSVLogger(tmp_path), TensorBoardLogger(tmp_path)
    mlflow = MLFlowLogger(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert (keeps_pictures(trainer(csv)), keeps_histograms(trainer(csv))) == (False, False)
    assert (keeps_pictures(trainer(csv, mlflow)), keeps_histograms(trainer(csv, mlflow))) == (True, False)
    assert (keeps_pictures(trainer(csv, board)), keeps_histograms(trainer(csv, board))) == (True, True)


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    "launcher",
    [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "torch_threads=1"]],
    ids=["basic", "joblib"],
)
def test_a_sweep_is_one_tracked_run_per_job_grouped_by_the_sweep(launcher: list[str], tmp_path: Path, data_dir):
    """The basic launcher runs the jobs one after the other in one process; joblib's two at once, writing to the one
    SQLite store together."""
    log_dir = tmp_path / "outputs"
    result = run_module("src.train", "-m", *launcher, *TINY, QUIET, ALL, "seed=1,2", f"paths.log_dir={log_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = {p.parent for p in find_runs(log_dir)}
    jobs = sweep_jobs(sweep)
    assert [j.name for j in jobs] == ["0_seed=1", "1_seed=2"]
    group = str(sweep.relative_to(log_dir))  # train/multiruns/<date>/<time>_<pid>
    runs = mlflow_runs(log_dir, group)
    assert sorted(runs) == ["0_seed=1", "1_seed=2"]
    for job in jobs:
        assert runs[job.name].data.params["seed"] == job.name[-1]
        found = wandb_run(job)
        assert (found["name"], found["group"]) == (job.name, group)
        assert_same_final_metrics(job, runs[job.name].data.metrics, found["last"])


def test_the_readmes_mlflow_ui_shows_the_run(one_run, tmp_path: Path):
    """``mlflow ui`` on the store a run wrote, asked through MLflow's own client over HTTP (MLflow 3.17's server
    imports SQLAlchemy 2, which the Optuna sweeper's pin excludes: pyproject.toml)."""
    from mlflow.tracking import MlflowClient

    log_dir, run = one_run
    with MLflowUI(log_dir / "mlflow.db", tmp_path) as ui:
        client = MlflowClient(ui.uri)
        (found,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert found.info.run_name == str(run.relative_to(log_dir / "train"))
    record = json.loads((run / "metrics.json").read_text())["metrics"]
    assert found.data.metrics["test/acc"] == pytest.approx(record["test/acc"], rel=1e-6)


# -- a tracker lost mid-run -------------------------------------------------------------------------------------------
def test_a_run_whose_tracking_server_dies_keeps_training_and_says_so_once(tmp_path: Path, data_dir):
    """A team's MLflow server (``mlflow ui``) killed after the run's first checkpoint: one warning, the training ends
    as it would have, its checkpoints and record written; MLflow keeps what it had been sent."""
    store, run = tmp_path / "server.db", tmp_path / "run"
    with MLflowUI(store, tmp_path) as ui:
        tracker = ["logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={ui.uri}", f"paths.log_dir={tmp_path}"]
        recipe = [*SHORT, EVERY_STEP, *tracker]  # the artifacts' folder in tmp_path, not the project's outputs/
        proc = start_after_first_checkpoint(run, *recipe)
        ui.kill()
        _, stderr = proc.communicate(timeout=600)

    assert proc.returncode == 0, stderr[-3000:]
    assert stderr.count("stopped taking this run's record") == 1, stderr[-3000:]
    assert f"MLflow at {ui.uri} stopped taking" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert torch_epoch(run / "checkpoints" / "last.ckpt") == 2
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")  # what the server had stored, read from its database
    (found,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    steps = [m.step for m in client.get_metric_history(found.info.run_id, "train/loss")]
    assert steps[:30] == list(range(30)) and len(steps) < 90, steps  # the first epoch's steps, not all three
    assert found.info.status == "RUNNING"  # never told the run ended: the server was gone


def test_a_run_whose_wandb_service_dies_keeps_training_and_says_so_once(tmp_path: Path, data_dir):
    """W&B's service process (``wandb-core``, which writes the offline run) killed after the first checkpoint: one
    warning, no traceback (W&B's exit hook included), the training ends as it would have."""
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # its own service, not an inherited one
    recipe = [*SHORT, EVERY_STEP, "logger=[tensorboard,wandb]", f"paths.log_dir={tmp_path}"]
    proc = start_after_first_checkpoint(run, *recipe, env=env)
    (service,) = [pid for pid in children(proc.pid) if b"wandb-core" in command_line(pid)]
    os.kill(service, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)

    assert proc.returncode == 0, stderr[-3000:]
    assert stderr.count("stopped taking this run's record") == 1 and "W&B (" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert torch_epoch(run / "checkpoints" / "last.ckpt") == 2
    assert "val/acc" in read_scalars(run).Tags()["scalars"]  # TensorBoard went on


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def torch_epoch(checkpoint: Path) -> int:
    import torch

    return torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]


# -- refused before any work ------------------------------------------------------------------------------------------
def test_a_tracker_whose_package_is_missing_is_refused_with_the_install_command(tmp_path: Path):
    # the package made unimportable in this process alone (as on a machine without it), then src.train as run by -m
    code = (
        "import runpy, sys; sys.modules['wandb'] = None; sys.argv[0] = 'src.train'; "
        "runpy.run_module('src.train', run_name='__main__', alter_sys=True)"
    )
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", code, "logger=[tensorboard,wandb]", f"hydra.run.dir={run}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'logger=wandb: needs the wandb package, which is not installed here; pip install -e ".[trackers]"' in (
        result.stderr
    )
    assert "Traceback" not in result.stderr and not (run / "checkpoints").exists()


def test_a_tracking_server_that_does_not_answer_is_refused_with_its_address(tmp_path: Path):
    uri = f"http://127.0.0.1:{free_port()}"
    result = run_module("src.train", "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"logger.mlflow.tracking_uri={uri}: cannot be reached (Connection refused)" in result.stderr
    assert not (tmp_path / "checkpoints").exists()
