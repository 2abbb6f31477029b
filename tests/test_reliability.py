"""Failure modes, each done for real: subprocesses and signals, corrupted copies of the real files, real NaNs."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.core.errors import ConfigError, DataIntegrityError
from src.data import MNISTDataModule
from src.training.callbacks import RNGStateCheckpoint
from src.training.lit_module import LitLeNet5
from src.training.rules import check_training_config as validate
from tests.helpers import ROOT, TINY, read_scalars, run_module, sweep_jobs

QUIET = "callbacks.progress_bar.refresh_rate=0"


def start_train(*overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def default_sigint() -> None:
        # A shell that starts commands in the background makes them ignore SIGINT, and Python then never
        # raises KeyboardInterrupt: give the run the default handling a terminal's Ctrl-C would meet.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(
        [sys.executable, "-m", "src.train", *overrides, QUIET],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"process ended ({proc.returncode}) before {path} appeared:\n{proc.stdout.read()[-3000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def final_state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


# -- 1. resume after SIGKILL: the same run as one never interrupted -----------------------------------------
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path, data_dir):
    # augment=affine: the resumed run also continues the same stream of augmented batches
    recipe = [
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=60",
        "trainer.deterministic=true",
        "seed=7",
        "augment=affine",
    ]
    whole, killed, resumed = tmp_path / "whole", tmp_path / "killed", tmp_path / "resumed"

    proc = start_train(*recipe, f"hydra.run.dir={killed}")
    wait_for(killed / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    epoch_at_kill = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert epoch_at_kill < 2, "the run finished before it could be killed"

    result = run_module("src.train", QUIET, *recipe, f"resume={killed}", f"hydra.run.dir={resumed}")
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_module("src.train", QUIET, *recipe, f"hydra.run.dir={whole}")
    assert result.returncode == 0, result.stderr[-3000:]

    a, b = json.loads((whole / "metrics.json").read_text()), json.loads((resumed / "metrics.json").read_text())
    assert a["epochs"] == b["epochs"] == 3
    assert a["metrics"]["test/acc"] == b["metrics"]["test/acc"]
    wa, wb = final_state(whole), final_state(resumed)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ after resume"


def test_a_resumed_run_reads_in_tensorboard_and_history_as_one_never_stopped(tmp_path: Path, data_dir):
    """A run stopped after writing events past its checkpoint (killed mid-epoch, then requeued or resumed in its own
    folder): TensorBoard shows each step once, with the resumed run's values, exactly the uninterrupted run's curves;
    history.json has every epoch with its train and validation metrics."""
    recipe = [
        *TINY,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=6",
        "trainer.log_every_n_steps=1",
        "trainer.deterministic=true",
        "seed=5",
    ]
    whole, stopped, kept = tmp_path / "whole", tmp_path / "stopped", tmp_path / "kept"
    assert run_module("src.train", *recipe, f"hydra.run.dir={whole}").returncode == 0
    # The stopped run: the whole of both epochs written to its events, but its checkpoint from the end of epoch 0,
    # as a run killed late in epoch 1 leaves it.
    every_epoch = [
        "+callbacks.every_epoch._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.every_epoch.dirpath={kept}",
        "+callbacks.every_epoch.monitor=val/loss",  # every epoch kept (save_top_k=-1), whatever it monitors
        "+callbacks.every_epoch.save_top_k=-1",
        "+callbacks.every_epoch.filename='{epoch}'",
    ]
    assert run_module("src.train", *recipe, *every_epoch, f"hydra.run.dir={stopped}").returncode == 0
    shutil.copy(kept / "epoch=0.ckpt", stopped / "checkpoints" / "last.ckpt")
    (stopped / "checkpoints" / "last.ckpt").touch()  # the newest: the one resume= picks
    result = run_module("src.train", *recipe, f"resume={stopped}", f"hydra.run.dir={stopped}")
    assert result.returncode == 0, result.stderr[-3000:]

    a, b = read_scalars(whole), read_scalars(stopped)
    assert set(a.Tags()["scalars"]) == set(b.Tags()["scalars"])
    for tag in a.Tags()["scalars"]:
        steps_a, steps_b = [e.step for e in a.Scalars(tag)], [e.step for e in b.Scalars(tag)]
        assert steps_b == steps_a, f"{tag}: steps {steps_b}, uninterrupted {steps_a}"
        if not tag.startswith("time/"):  # seconds and images/s: the clock's, not the run's
            assert [e.value for e in b.Scalars(tag)] == pytest.approx([e.value for e in a.Scalars(tag)], rel=1e-5), tag
    history_a, history_b = (json.loads((run / "history.json").read_text()) for run in (whole, stopped))
    assert [set(row) for row in history_b] == [{"epoch", "step", "train/loss", "train/acc", "val/loss", "val/acc"}] * 2
    for row_a, row_b in zip(history_a, history_b):
        assert row_b == pytest.approx(row_a, rel=1e-5)


def test_a_checkpoint_written_before_the_module_kept_the_history_resumes_with_its_epochs():
    """Checkpoints written before the LightningModule owned the history kept it in the LearningCurves callback's
    state: a run resumed from one keeps those epochs; a newer checkpoint's own history comes first."""
    rows = [{"epoch": 0, "step": 3, "train/loss": 2.0, "train/acc": 0.3, "val/loss": 1.9, "val/acc": 0.4}]
    module = LitLeNet5(model={}, optimizer={})
    module.on_load_checkpoint({"state_dict": {}, "callbacks": {"LearningCurves": {"history": rows}}})
    assert module.history == rows
    module.on_load_checkpoint({"history": rows[:0], "callbacks": {"LearningCurves": {"history": rows}}})
    assert module.history == []


@pytest.mark.parametrize("where", ["new folder", "same folder"])
def test_resume_refuses_a_different_recipe(where: str, tmp_path: Path, data_dir):
    run = tmp_path / "run"
    assert run_module("src.train", *TINY, "test=false", f"hydra.run.dir={run}").returncode == 0
    # In the same folder, Hydra rewrites .hydra/config.yaml with the new recipe before the run starts: the
    # recipe to compare with comes from the checkpoint.
    folder = tmp_path / "again" if where == "new folder" else run
    record = {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()}
    result = run_module("src.train", *TINY, "optimizer=adam", "seed=7", f"resume={run}", f"hydra.run.dir={folder}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert (
        "recipe differs" in result.stderr
        and "optimizer._target_" in result.stderr
        and "seed: run had 42" in result.stderr
    )
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"  # the finished run's record stays
    # ... and its .hydra/ too, which Hydra had rewritten with the refused run's before the check
    assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == record


def test_a_run_refused_in_an_earlier_runs_folder_leaves_its_record(tmp_path: Path, data_dir):
    """Refusals other than a bad value (a checkpoint that cannot be read), and a relative run folder with
    hydra.job.chdir=true (the task runs inside the folder): the earlier run's .hydra/ and metrics.json stay."""
    assert run_module("src.train", *TINY, "test=false", f"hydra.run.dir={tmp_path / 'run'}").returncode == 0
    record = {p: p.read_bytes() for p in [*(tmp_path / "run" / ".hydra").iterdir(), tmp_path / "run" / "metrics.json"]}
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_text("junk\n")
    result = run_module(
        "src.train",
        *TINY,
        f"resume={tmp_path / 'run'}",
        "hydra.run.dir=run",
        "hydra.job.chdir=true",
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2 and "is not a readable checkpoint" in result.stderr, result.stderr[-3000:]
    assert {p: p.read_bytes() for p in record} == record


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path):
    import random as pyrandom

    import numpy as np

    callback = RNGStateCheckpoint()
    torch.manual_seed(1), np.random.seed(2), pyrandom.seed(3)
    torch.save({"rng": callback.state_dict()}, tmp_path / "rng.ckpt")
    expected = (torch.rand(3), np.random.rand(3), pyrandom.random())
    torch.manual_seed(9), np.random.seed(9), pyrandom.seed(9)
    callback.load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and pyrandom.random() == expected[2]


# -- 2. clean stops: SIGTERM and Ctrl-C leave a checkpoint and say how to resume --------------------------------
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 1)])
def test_signal_writes_a_resumable_checkpoint(sig, code, tmp_path: Path, data_dir):
    run = tmp_path / "run"
    # scheduler=none: a schedule made for 50 epochs could not be resumed as a 2-epoch run (a recipe change, refused)
    proc = start_train(
        "trainer.max_epochs=50", "trainer.limit_train_batches=50", "scheduler=none", f"hydra.run.dir={run}"
    )
    wait_for(run / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, output[-3000:]
    saved = run / "checkpoints" / "on_exception.ckpt"
    assert saved.is_file() and "Resume with:" in output and f"ckpt_path={saved}" in output
    assert torch.load(saved, weights_only=True)["epoch"] < 50
    status = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    assert status.get("status") != "completed"

    result = run_module(
        "src.train",
        QUIET,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=50",
        "scheduler=none",
        f"ckpt_path={saved}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_resume_from_a_mid_epoch_stop_matches_an_uninterrupted_run(tmp_path: Path, data_dir):
    """SIGTERM in the middle of an epoch, then resume from on_exception.ckpt: the resumed run starts at the batch the
    stop left off (not at the epoch's first again), with the same augmentations, and ends with the same weights."""
    recipe = [
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=150",
        "trainer.limit_val_batches=2",
        "trainer.deterministic=true",
        "seed=3",
        "augment=shift",
        "test=false",
    ]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    proc = start_train(*recipe, f"hydra.run.dir={stopped}")
    wait_for(stopped / "checkpoints" / "last.ckpt", proc)  # epoch 0 is done; epoch 1 runs
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output[-3000:]
    step = torch.load(stopped / "checkpoints" / "on_exception.ckpt", weights_only=True)["global_step"]
    assert 150 < step < 300, f"stopped at step {step}, not in the middle of the second epoch"

    result = run_module("src.train", QUIET, *recipe, f"resume={stopped}", f"hydra.run.dir={stopped}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not resumable" not in result.stderr
    assert run_module("src.train", QUIET, *recipe, f"hydra.run.dir={whole}").returncode == 0
    wa, wb = final_state(whole), final_state(stopped)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), f"weights differ after a resume from step {step}"


def test_sigterm_during_a_sweep_keeps_finished_jobs(tmp_path: Path, data_dir):
    proc = start_train(
        "-m",
        "trainer.max_epochs=1,50",
        "trainer.limit_train_batches=30",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        f"hydra.sweep.dir={tmp_path}",
    )
    first, second = tmp_path / "0_trainer.max_epochs=1", tmp_path / "1_trainer.max_epochs=50"
    wait_for(second / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    finished = json.loads((first / "metrics.json").read_text())
    assert finished["status"] == "completed" and (first / "checkpoints" / "last.ckpt").is_file()
    assert (second / "checkpoints" / "on_exception.ckpt").is_file()


# -- 3. checkpoints are never half-written ----------------------------------------------------------------------
def test_kill_during_saving_never_leaves_a_broken_last_ckpt(tmp_path: Path, data_dir):
    rng = random.Random(0)
    kills = 0
    attempts = 4  # each a fresh run killed at a random moment while it saves after every step
    for attempt in range(attempts):
        run = tmp_path / str(attempt)
        # a checkpoint after every step: most of the run's time is spent saving
        proc = start_train(
            "trainer.max_epochs=5",
            "trainer.limit_train_batches=200",
            "+callbacks.model_checkpoint.every_n_train_steps=1",
            f"hydra.run.dir={run}",
        )
        wait_for(run / "checkpoints" / "last.ckpt", proc)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        last = run / "checkpoints" / "last.ckpt"
        assert last.is_file()
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)
        assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert kills == attempts


def test_last_ckpt_holds_the_latest_epoch_even_without_a_new_best(tmp_path: Path, data_dir):
    """Lightning 2.6's save_last writes last.ckpt only when a new best is saved; resuming from it would then repeat
    every epoch since the best. Here last.ckpt is each epoch's own, and the best checkpoint stays the best."""
    run = tmp_path / "run"
    # a learning rate too small to change a single prediction: epochs 1 and 2 are no new best
    result = run_module(
        "src.train",
        *TINY,
        "trainer.max_epochs=3",
        "optimizer.lr=1e-12",
        "scheduler=none",
        "test=false",
        f"hydra.run.dir={run}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 9)  # 3 epochs of 3 batches
    assert [p.name[:13] for p in (run / "checkpoints").glob("best-*.ckpt")] == ["best-epoch000"]


# -- 4. config validated before any work --------------------------------------------------------------------------
BAD_CONFIGS = [
    ("model.activation=swish", "model.activation='swish'", "sigmoid"),
    ("model.pooling=l2", "model.pooling='l2'", "avg"),
    ("optimizer.lr=0", "optimizer.lr=0", "> 0"),
    ("optimizer.lr=-0.1", "optimizer.lr=-0.1", "> 0"),
    ("optimizer.lr=fast", "optimizer.lr='fast'", "number"),
    ("data.batch_size=0", "data.batch_size=0", "> 0"),
    ("data.batch_size=-8", "data.batch_size=-8", "> 0"),
    ("optimizer.momentum=1.0", "optimizer.momentum=1.0", "[0, 1)"),
    ("optimizer.momentum=-0.5", "optimizer.momentum=-0.5", "[0, 1)"),
    ("data.dataset=cifar10", "data.dataset='cifar10'", "fashion_mnist"),
    ("trainer.max_epochs=-2", "trainer.max_epochs=-2", ">= 0"),
    ("data.pipeline=fast", "data.pipeline='fast'", "tensor"),
    ("seed=abc", "seed='abc'", "integer"),
    ("torch_threads=0", "torch_threads=0", "integer > 0"),
    ("reuse_cpu_memory=maybe", "reuse_cpu_memory='maybe'", "true or false"),
    ("model.channels=[]", "model.channels=[]", "one or more integers > 0"),
    ("model.hidden=[120,0]", "model.hidden=[120, 0]", "integers > 0"),
    ("model.padding=-1", "model.padding=-1", ">= 0"),
    ("data.val_size=-1", "data.val_size=-1", "0..59999"),
    # no validation split: the validation loop would read the test set, and the default checkpoint is chosen by it
    ("data.val_size=0", "data.val_size=0 with callbacks.model_checkpoint.monitor='val/acc'", "monitor=null"),
    ("callbacks.first_layer_filters.every_n_epochs=0", "callbacks.first_layer_filters.every_n_epochs=0", ">= 1"),
    # three 2x2 poolings after 5x5 convs: 32 -> 28 -> 14 -> 10 -> 5 -> 1 -> 0, the size it reaches and the limit
    ("model.channels=[6,16,32]", "32 -> 28 -> 14 -> 10 -> 5 -> 1 -> 0 and vanishes at pool3", "at most 2 conv layers"),
    # Lightning's own message for these ("in [0.0, 1.0] or an int") came as a traceback from inside the Trainer
    ("trainer.limit_train_batches=-1", "trainer.limit_train_batches=-1", "an integer >= 0"),
    ("trainer.limit_val_batches=1.5", "trainer.limit_val_batches=1.5", "a fraction in [0.0, 1.0]"),
]


@pytest.mark.parametrize("override,named,allowed", BAD_CONFIGS)
def test_bad_value_is_named_with_what_is_allowed(override, named, allowed, cfg):
    with pytest.raises(ConfigError) as err:
        validate(cfg(override))
    assert named in str(err.value) and allowed in str(err.value)


def test_a_squeeze_that_is_not_two_numbers_is_named_not_a_crash(cfg):
    # the check of squeeze against the classic pipeline read it as a list first (TypeError: not iterable)
    with pytest.raises(ConfigError) as err:
        validate(cfg("augment=affine", "augment.squeeze=1.1", "augment.shear=0.5", "data.pipeline=classic"))
    assert "augment.squeeze=1.1: must be two numbers > 0" in str(err.value)
    assert "augment.shear=0.5 with data.pipeline=classic" in str(err.value)  # every problem at once


def test_batch_limits_lightning_takes_are_accepted(cfg):
    # Lightning reads a whole float over 1 as a number of batches, and a float up to 1 as a fraction
    validate(cfg("trainer.limit_train_batches=10.0", "trainer.limit_val_batches=0.25", "trainer.limit_test_batches=3"))


def test_eval_refuses_to_read_no_test_batch(tmp_path: Path):
    # before: IndexError from src.eval's first line after trainer.test, which returned no metrics
    result = run_module(
        "src.eval",
        f"ckpt_path={tmp_path / 'missing.ckpt'}",
        "trainer.limit_test_batches=0",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "trainer.limit_test_batches=0: must not be 0" in result.stderr


def test_arguments_the_optimizer_does_not_take_are_named(cfg):
    # fast_mnist sets Muon's momentum; swapping in Adam would otherwise fail deep inside Lightning
    with pytest.raises(ConfigError) as err:
        validate(cfg("experiment=fast_mnist", "optimizer=adam"))
    assert "optimizer.momentum: not an argument of torch.optim.Adam" in str(err.value) and "betas" in str(err.value)


@pytest.mark.parametrize(
    "override", ["model.activation=swish", "optimizer.lr=-1", "data.batch_size=0", "model.channels=[6,16,32,64]"]
)
def test_bad_value_stops_before_download_or_writing(override, tmp_path: Path):
    empty_data = tmp_path / "data"  # were the checks passed, the run would try to download into it
    result = run_module("src.train", override, f"hydra.run.dir={tmp_path / 'run'}", env={"DATA_DIR": str(empty_data)})
    assert result.returncode == 2
    assert "Invalid config" in result.stderr and override.split("=")[0] in result.stderr
    assert "Traceback" not in result.stderr
    assert not empty_data.exists()
    assert not (tmp_path / "run" / "checkpoints").exists() and not list(
        (tmp_path / "run").glob("events.out.tfevents.*")
    )


# -- 5. data integrity --------------------------------------------------------------------------------------------
@pytest.fixture
def data_copy(tmp_path: Path, data_dir) -> Path:
    shutil.copytree(data_dir / "MNIST", tmp_path / "MNIST")
    return tmp_path


def corrupt_truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 784)


def corrupt_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"\x00\x00\x08\x04")  # magic 2052 instead of 2049/2051


def corrupt_byte(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))  # same size, one byte changed


@pytest.mark.parametrize(
    "name,corrupt,fault",
    [
        ("train-images-idx3-ubyte", corrupt_truncate, "truncated"),
        ("t10k-labels-idx1-ubyte", corrupt_header, "wrong header: magic number 2052"),
        ("train-labels-idx1-ubyte", corrupt_byte, "changed bytes"),
        ("t10k-images-idx3-ubyte", corrupt_byte, "changed bytes"),
    ],
)
def test_corrupted_file_is_named_with_its_fault(name, corrupt, fault, data_copy: Path):
    corrupt(data_copy / "MNIST" / "raw" / name)
    dm = MNISTDataModule(data_dir=str(data_copy), download=False)
    with pytest.raises(DataIntegrityError) as err:
        dm.setup()
    assert name in str(err.value) and fault in str(err.value)


def test_corrupted_file_stops_the_run_with_a_message(data_copy: Path, tmp_path: Path):
    corrupt_byte(data_copy / "MNIST" / "raw" / "train-images-idx3-ubyte")
    result = run_module("src.train", *TINY, f"hydra.run.dir={tmp_path / 'run'}", env={"DATA_DIR": str(data_copy)})
    assert result.returncode == 2
    assert "train-images-idx3-ubyte: changed bytes" in result.stderr and "Traceback" not in result.stderr


# -- 6. divergence -------------------------------------------------------------------------------------------------
def test_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path: Path, data_dir):
    # Epoch 0 trains normally and checkpoints; from epoch 1 on the learning rate is absurd (x 1e12).
    run = tmp_path / "run"
    result = run_module(
        "src.train",
        QUIET,
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=30",
        "scheduler=step",
        "scheduler.step_size=1",
        "scheduler.gamma=1e12",
        f"hydra.run.dir={run}",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Training diverged" in result.stderr and "at step " in result.stderr and "optimizer.lr" in result.stderr
    assert "Traceback" not in result.stderr
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(torch.isfinite(t).all() for t in last["state_dict"].values())
    assert not (run / "checkpoints" / "on_exception.ckpt").exists()
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"


def test_a_diverging_job_fails_alone_in_a_sweep(tmp_path: Path, data_dir):
    result = run_module("src.train", "-m", "optimizer.lr=0.05,1e9", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode != 0  # the sweep reports that a job failed...
    first, second = sweep_jobs(tmp_path)
    assert json.loads((first / "metrics.json").read_text())["status"] == "completed"  # ...and ran the rest
    failed = json.loads((second / "metrics.json").read_text())
    assert failed["status"] == "failed" and "diverged" in failed["error"]


# -- 7. safe loading ------------------------------------------------------------------------------------------------
class CodePayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_not_run(tmp_path: Path, data_dir):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": CodePayload(marker)}, evil)
    result = run_module("src.train", *TINY, f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "refused" in result.stderr and not marker.exists()


@pytest.mark.parametrize("kind", ["missing", "not_a_checkpoint", "text"])
def test_bad_checkpoint_path_is_a_clear_error(kind, tmp_path: Path, data_dir):
    path = tmp_path / "model.ckpt"
    if kind == "not_a_checkpoint":
        path.write_bytes(os.urandom(4096))
    elif kind == "text":  # torch.load's error for it is a bare KeyError: 174812789
        path.write_text("junk\n")
    result = run_module("src.train", *TINY, f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(path) in result.stderr
    assert ("no such checkpoint file" if kind == "missing" else "is not a readable checkpoint") in result.stderr
    if kind == "text":
        assert "not a whole file torch.save wrote: KeyError" in result.stderr, result.stderr[-2000:]
