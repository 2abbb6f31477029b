"""MLflow and Weights & Biases beside TensorBoard (logger=[tensorboard,mlflow,wandb]), read back through each tool's
own reader: MLflow's MlflowClient on the SQLite store, W&B's offline run file parsed into W&B's own protobuf records,
TensorBoard's EventAccumulator. A real 1-epoch run and a real 2-job sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from src.core.runs import find_runs
from tests.helpers import ROOT, TINY, free_port, hparams_data, read_scalars, run_module, sweep_jobs

pytest.importorskip("mlflow", reason="the trackers extra is not installed (pip install -e '.[trackers]')")
pytest.importorskip("wandb", reason="the trackers extra is not installed (pip install -e '.[trackers]')")

ALL = "logger=[tensorboard,mlflow,wandb]"
QUIET = "callbacks.progress_bar.refresh_rate=0"
EVERY_STEP = "trainer.log_every_n_steps=1"
PICTURES = ["images/train_samples", "images/confusion_matrix", "images/worst_misclassified", "filters/conv1"]


def mlflow_client(log_dir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{log_dir}/mlflow.db")


def mlflow_runs(log_dir: Path, experiment: str) -> dict[str, Any]:
    client = mlflow_client(log_dir)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    return {r.info.run_name: r for r in client.search_runs([found.experiment_id])}


def mlflow_artifacts(log_dir: Path, run_id: str, folder: str = "") -> list[str]:
    client, found = mlflow_client(log_dir), []
    for item in client.list_artifacts(run_id, folder or None):
        found += mlflow_artifacts(log_dir, run_id, item.path) if item.is_dir else [item.path]
    return found


def wandb_records(run: Path) -> Iterator[Any]:
    """The records of a run's offline W&B file (``wandb/offline-run-*/run-*.wandb``), as W&B's protobuf ``Record``s:
    the file is W&B's LevelDB-style log (a 7-byte header, then 32 KiB blocks of checksummed, typed chunks)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:7] == b":W&B\xe1\xbe\x00", f"{path} is not a W&B run file"
    block, pos, chunks = 32768, 7, []
    while pos + 7 <= len(data):
        if (left := block - pos % block) < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def wandb_run(run: Path) -> dict[str, Any]:
    """What W&B recorded: the run's name, group and config, each key's last logged value, the images' keys."""
    found: dict[str, Any] = {"config": {}, "last": {}}
    for record in wandb_records(run):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found["name"], found["group"] = record.run.display_name, record.run.run_group
            found["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            found["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            found["last"].update(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
    return found


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
    result = run_module("src.train", *TINY, QUIET, EVERY_STEP, ALL, f"paths.log_dir={log_dir}")
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
