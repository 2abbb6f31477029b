"""End-to-end: ``python -m src.train`` as a subprocess on the real data, read back with TensorBoard's reader."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.plugins.hparams import api_pb2

from src.data.datasets import load_test_set
from src.data.preprocessing import Preprocessing
from src.training.lit_module import LitLeNet5
from tests.helpers import ROOT, TINY, hparams_data, read_scalars, run_module, sweep_jobs

SCALARS = {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/loss", "test/acc"}


def test_train_end_to_end(tmp_path: Path, data_dir):
    result = run_module("src.train", *TINY, "trainer.log_every_n_steps=1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]

    acc = read_scalars(tmp_path)  # event files sit in the run folder itself: TensorBoard names the run by it
    assert SCALARS <= set(acc.Tags()["scalars"])
    experiment = hparams_data(acc, "experiment")
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    assert {"val/acc_best", "test/acc", "test/loss"} <= metric_tags
    types = {h.name: api_pb2.DataType.Name(h.type) for h in experiment.hparam_infos}
    assert {
        "data",
        "data.batch_size",
        "model.activation",
        "model.pooling",
        "optimizer",
        "optimizer.lr",
        "scheduler",
        "seed",
        "trainer.max_epochs",
    } <= set(types)
    assert not any(name.endswith(("data_dir", "download", "_target_")) for name in types)  # no paths, no plumbing
    assert types["optimizer.nesterov"] == "DATA_TYPE_BOOL" and types["optimizer.lr"] == "DATA_TYPE_FLOAT64"
    session = hparams_data(acc, "session_start_info")
    assert session.hparams["optimizer.nesterov"].bool_value is True  # the default recipe: SGD with Nesterov momentum
    assert session.hparams["optimizer"].string_value == "sgd" and session.hparams["data"].string_value == "mnist"

    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["model"]["activation"] == "relu"
    assert isinstance(ckpt["hyper_parameters"]["optimizer"], dict)  # plain containers, not OmegaConf
    assert any(p.name.startswith("best-") for p in (tmp_path / "checkpoints").iterdir())

    summary = json.loads((tmp_path / "metrics.json").read_text())
    # TINY tests 2 batches of 500: the confusion matrix counts those 1,000 images, and test/acc is its diagonal's share
    matrix = torch.tensor(summary["test_confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 1_000
    assert summary["metrics"]["test/acc"] == pytest.approx(matrix.trace().item() / 1_000, abs=1e-6)
    assert summary["metrics"]["test/acc"] == pytest.approx(acc.Scalars("test/acc")[-1].value, abs=1e-6)
    assert (tmp_path / ".hydra" / "config.yaml").is_file() and (tmp_path / "train.log").is_file()
    assert "Final metrics: " in (tmp_path / "train.log").read_text()


def test_two_runs_started_together_get_their_own_folders(tmp_path: Path, data_dir):
    cmd = [sys.executable, "-m", "src.train", *TINY, "test=false", f"paths.log_dir={tmp_path}"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    runs = sorted(tmp_path.glob("train/runs/*/*"))  # outputs/train/runs/<date>/<time>_<pid>
    assert len(runs) == 2, runs
    assert all((run / "checkpoints" / "last.ckpt").is_file() for run in runs)


def test_resuming_another_run_into_a_folder_with_checkpoints_is_refused(tmp_path: Path, data_dir):
    """ckpt_path= names one run's checkpoint, hydra.run.dir= another run's folder: that folder's checkpoints would be
    overwritten, so the run is refused."""
    for name in ("a", "b"):
        assert run_module("src.train", *TINY, "test=false", f"hydra.run.dir={tmp_path / name}").returncode == 0
    before = (tmp_path / "b" / "checkpoints" / "last.ckpt").read_bytes()
    result = run_module(
        "src.train",
        *TINY,
        f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}",
        "trainer.max_epochs=2",
        f"hydra.run.dir={tmp_path / 'b'}",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{tmp_path / 'b'} already holds the checkpoints of an earlier run" in result.stderr
    assert (tmp_path / "b" / "checkpoints" / "last.ckpt").read_bytes() == before


def test_a_run_folder_with_checkpoints_is_not_resumed_unasked(tmp_path: Path, data_dir):
    """Started again in a folder that holds a run's checkpoints, a run is refused before any work: not resumed (it was
    not asked to) and not started over on top of them (which would overwrite them)."""
    first = run_module("src.train", *TINY, f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    metrics = (tmp_path / "metrics.json").read_text()
    record = {p.name: p.read_bytes() for p in (tmp_path / ".hydra").iterdir()}
    again = run_module(
        "src.train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path}", env={"SLURM_RESTART_COUNT": "0"}
    )
    assert again.returncode == 2, again.stderr[-3000:]
    assert f"{tmp_path} already holds the checkpoints of an earlier run" in again.stderr
    assert f"resume={tmp_path}" in again.stderr and "Resuming" not in again.stderr and "Traceback" not in again.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()} == before
    assert (tmp_path / "metrics.json").read_text() == metrics
    # Hydra wrote the refused run's .hydra/ over the earlier run's before the check: it is put back
    assert {p.name: p.read_bytes() for p in (tmp_path / ".hydra").iterdir()} == record
    assert "trainer.max_epochs=2" not in (tmp_path / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.parametrize("how", ["requeued", "asked"])
def test_a_run_resumes_in_its_folder_when_requeued_or_asked(how: str, tmp_path: Path, data_dir):
    """SLURM's restart count says the job was requeued (what a preempted cluster job sees), or resume= asks for it:
    the run continues from its own last.ckpt in its own folder, keeps its history and its best accuracy, and says
    why it resumed."""
    # A constant learning rate: a schedule made for the first run's length could not be extended to 3 epochs (the
    # test below); here the resume rule is what is tested.
    first = run_module("src.train", *TINY, "scheduler=none", f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    # A best accuracy no later epoch of this tiny run reaches: the resumed run must carry it, not restart its max.
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["state_dict"]["val_acc_best.max_value"] = torch.tensor(0.999)
    torch.save(checkpoint, last)
    extra, env, why = {
        "requeued": ([], {"SLURM_RESTART_COUNT": "1"}, "SLURM requeued this job (SLURM_RESTART_COUNT=1)"),
        "asked": (
            [f"resume={os.path.relpath(tmp_path, ROOT)}"],
            {},
            f"asked by resume={os.path.relpath(tmp_path, ROOT)}",
        ),
    }[how]  # resume= as users type it: relative to where they run
    again = run_module(
        "src.train", *TINY, "scheduler=none", "trainer.max_epochs=3", *extra, f"hydra.run.dir={tmp_path}", env=env
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"last.ckpt: {why}" in again.stderr
    assert "exists and is not empty" not in again.stderr  # its own checkpoints, not a foreign folder's
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["epochs"] == 3  # one epoch restored, two more trained: not three from scratch
    assert summary["metrics"]["val/acc_best"] == pytest.approx(0.999)  # the best of all epochs, the restored ones too
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1, 2] and "val/acc" in history[0]


def test_a_resumed_run_cannot_outgrow_its_schedule(tmp_path: Path, data_dir):
    """The one-cycle schedule (the default) is made for the run's length and comes back with the checkpoint: resuming
    a 1-epoch run for 3 epochs is refused with what to do, not left to fail inside PyTorch ("Tried to step 4 times")."""
    first = run_module("src.train", *TINY, f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_module("src.train", *TINY, "trainer.max_epochs=3", f"resume={tmp_path}", f"hydra.run.dir={tmp_path}")
    assert again.returncode == 2, again.stderr[-3000:]
    assert "OneCycleLR schedule was made for 3 steps; this run would take 9" in again.stderr
    assert "trainer.max_epochs" in again.stderr and "Traceback" not in again.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"  # the first run's record stays


def test_multirun_writes_one_folder_per_job(tmp_path: Path, data_dir):
    result = run_module("src.train", "-m", "model.activation=relu,tanh", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sweep_jobs(tmp_path)
    # named by what varies across the sweep; TINY's overrides are the same for every job
    assert [j.name for j in jobs] == ["0_model.activation=relu", "1_model.activation=tanh"]
    for job, activation in zip(jobs, ["relu", "tanh"]):
        assert list(job.glob("events.out.tfevents.*"))
        assert f"activation: {activation}" in (job / ".hydra" / "config.yaml").read_text()
        assert "test/acc" in read_scalars(job).Tags()["scalars"]


def test_compiled_model_trains(tmp_path: Path, data_dir):
    result = run_module("src.train", "compile=true", *TINY, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"
    # the checkpoint holds the plain model's keys, so it loads into an uncompiled LeNet-5
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert "net.features.0.weight" in state and not any("_orig_mod" in k for k in state)


def test_ddp_on_two_cpu_processes(tmp_path: Path, data_dir):
    """Lightning's own DDP (gloo on CPU); each rank draws its shard of the epoch's permutation and tests half of the
    test set: the confusion matrix (torchmetrics, synced across the ranks) counts all 10,000 test images."""
    result = run_module(
        "src.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "torch_threads=1",
        *TINY,
        "trainer.limit_test_batches=null",
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr and "All distributed processes registered" in result.stderr
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["status"] == "completed"
    matrix = torch.tensor(summary["test_confusion_matrix"])
    assert matrix.sum() == 10_000  # both ranks' 5,000 each, not rank zero's shard alone
    assert matrix.sum(dim=1).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # MNIST's test set
    assert summary["metrics"]["test/acc"] == pytest.approx(matrix.trace().item() / 10_000, abs=1e-6)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    # one log file per process: rank 0's train.log, rank 1's train_rank1.log, never both writing one file
    assert (tmp_path / "train.log").is_file() and (tmp_path / "train_rank1.log").is_file()
    assert "Final metrics" in (tmp_path / "train.log").read_text()


@pytest.mark.parametrize("override", ["trainer.accelerator=gpu", "trainer=gpu"])
def test_gpu_without_a_gpu_is_refused_before_any_work(override: str, tmp_path: Path, data_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_module("src.train", override, *TINY, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Invalid config:\n  trainer.accelerator='gpu': this machine has no CUDA GPU" in result.stderr
    assert "trainer.accelerator=auto" in result.stderr and "trainer.accelerator=cpu" in result.stderr
    assert "Traceback" not in result.stderr and "MisconfigurationException" not in result.stderr
    assert not (tmp_path / "checkpoints").exists() and not list(tmp_path.glob("events.out.tfevents.*"))


def test_a_plain_run_prints_no_warning(tmp_path: Path, data_dir):
    """The default recipe as `python -m src.train` runs it, shortened: its stderr holds Lightning's and our log lines
    and the progress bar, but not one warning (Python's warnings print as `file.py:line: message`)."""
    result = run_module(
        "src.train",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=60",
        "trainer.limit_val_batches=3",
        "trainer.limit_test_batches=3",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stderr + result.stdout
    noise = [line for line in output.splitlines() if re.search(r"\.py:\d+: |Warning|warn\(|💡", line)]
    assert not noise, "\n".join(noise)
    assert "was configured so" not in output  # Lightning's note on a limit or interval set to its own default
    assert "Final metrics: " in result.stderr  # the run's own log still shows


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "recipe",
    [
        [],
        ["experiment=fast_mnist"],  # Muon's Newton-Schulz steps and bf16-mixed
        ["experiment=lecun1998"],  # one update per image, SDLM's curvature estimated on the GPU's data
    ],
    ids=["default", "fast_mnist", "lecun1998"],
)
def test_trains_on_gpu(recipe: list[str], tmp_path: Path, data_dir):
    result = run_module("src.train", *recipe, "trainer.accelerator=gpu", *TINY, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GPU available: True (cuda), used: True" in result.stderr + result.stdout
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "completed" and record["peak_gpu_mb"] > 0, record
    assert all(math.isfinite(v) for v in record["metrics"].values()), record["metrics"]


@pytest.mark.slow
def test_the_default_recipe_reaches_97_5_percent_in_one_epoch(tmp_path: Path, data_dir):
    """python -m src.train trainer.max_epochs=1: the default recipe (Kaiming init, a warm-up to its peak learning rate,
    annealing over the run) is robust enough that one epoch already gives 97.5% MNIST test accuracy."""
    result = run_module(
        "src.train", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    test_acc = json.loads((tmp_path / "metrics.json").read_text())["metrics"]["test/acc"]
    print(f"one MNIST epoch of the default recipe: test/acc={test_acc:.4f}")
    assert test_acc >= 0.975


@pytest.mark.slow
def test_d2l_sigmoid_leaves_its_plateau_in_two_epochs(tmp_path: Path, data_dir):
    """d2l's recipe (sigmoid, raw [0, 1] pixels, lr 0.9) sits at chance, loss ~2.30, for most of its first epoch, as
    in d2l's own plots; by the end of the second the loss has fallen well below it."""
    result = run_module(
        "src.train",
        "experiment=d2l_sigmoid",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=10",
        "test=false",
        "callbacks.progress_bar.refresh_rate=0",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [s.value for s in read_scalars(tmp_path).Scalars("train/loss")]
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    print(f"d2l_sigmoid, 2 epochs: train/loss {first:.3f} -> {last:.3f}")
    assert first > 2.2 and last < first - 0.5


def test_train_loss_is_logged_at_every_logging_step(tmp_path: Path, data_dir):
    # 2 epochs x 7 batches, log every 3 steps: Lightning writes at steps 2, 5, 8 and 11 (its step counter is
    # zero-based), and each written value is that step's own loss.
    result = run_module(
        "src.train",
        *TINY,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=7",
        "trainer.log_every_n_steps=3",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = read_scalars(tmp_path).Scalars("train/loss")
    assert [s.step for s in losses] == [2, 5, 8, 11]
    values = [s.value for s in losses]
    assert len(set(values)) == len(values) and all(0 < v < 5 for v in values)


def test_time_to_accuracy_counts_every_training_batch_around_mid_epoch_validations(monkeypatch):
    """With trainer.val_check_interval < 1 the stopwatch stops for each validation and starts again at the next
    training batch, so all of an epoch's training is counted and none of its validation. A fake clock: 1 s per read."""
    from types import SimpleNamespace

    from src.bench import time_to_accuracy

    clock = iter(range(100))
    monkeypatch.setattr(time_to_accuracy.time, "perf_counter", lambda: float(next(clock)))
    tta = time_to_accuracy.TimeToAccuracy(target=0.99)
    trainer, module = SimpleNamespace(sanity_checking=False), SimpleNamespace(device=torch.device("cpu"))
    tta.on_train_batch_start(trainer, module, None, 0)  # clock 0: training starts
    tta.on_train_batch_start(trainer, module, None, 1)  # the clock already runs: no restart
    tta.on_validation_epoch_start(trainer, module)  # clock 1: 1 s of training
    tta.on_train_batch_start(trainer, module, None, 2)  # clock 2: training again, after the validation
    tta.on_train_epoch_end(trainer, module)  # clock 3: epoch end, no validation after it
    assert tta.train_seconds == 2.0


def test_the_test_reads_the_weights_in_float32_under_a_bf16_recipe(data_dir):
    """fast_mnist trains in bf16-mixed where the CPU has bf16 arithmetic; its logged test/acc must still be what
    src.eval (float32) reports for the checkpoint: the test step's logits are the float32 network's, bit for bit."""
    torch.manual_seed(0)
    module = LitLeNet5(model={}, optimizer={})
    images, labels = load_test_set(data_dir, "mnist")
    x = Preprocessing(2, 0.1307, 0.3081)(images[:64])
    seen = []

    class Keep(L.Callback):
        def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            seen.append(outputs["logits"])

    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, callbacks=[Keep()],
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, labels[:64]), batch_size=64)
    trainer.test(module, dataloaders=loader, verbose=False)
    with torch.inference_mode():
        expected = module.net.eval()(x)
    assert seen[0].dtype == torch.float32
    assert torch.equal(seen[0], expected)
