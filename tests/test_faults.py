"""Faults of the machine under a run, made for real: a small tmpfs as the run folder that fills up (before training,
and mid-run when another writer takes the rest), a read-only mount, a path through a file, a data file truncated
between a run and its resume. Mounting needs root (CI is); elsewhere those tests skip, saying why."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, SHORT, TINY, run_module, start_after_first_checkpoint

QUIET = "callbacks.progress_bar.refresh_rate=0"
DISK_FULL = 74  # src.core.errors.DiskFull.exit_status


def mount_tmpfs(where: Path, size: str, *options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system: room for a LeNet-5 run's checkpoints, until the test fills it."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "4m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "ro"
    mount_tmpfs(disk, "1m", "ro")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def same_weights(a: Path, b: Path) -> bool:
    wa = torch.load(a / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    wb = torch.load(b / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def fill(disk: Path) -> None:
    """Take every free byte of ``disk``, as another program writing there would."""
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


# -- an output folder that cannot be written: refused before any work, exit 2, by every command -------------------
ENTRY_POINTS = [
    "src.train",
    "src.eval",
    "src.predict",
    "src.export",
    "src.trust",
    "src.visualize",
    "src.summary",
    "src.demo",
]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_an_output_folder_through_a_file_is_refused_by_every_command(module: str, tmp_path: Path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    result = run_module(module, f"hydra.run.dir={a_file / 'run'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"hydra.run.dir={a_file / 'run'}: the output folder cannot be written" in result.stderr
    assert f"{a_file} is a file, not a folder" in result.stderr and "Traceback" not in result.stderr
    assert a_file.read_text() == "not a folder"


def test_a_read_only_output_folder_is_refused_for_a_run_a_sweep_and_a_report(read_only_disk: Path, data_dir):
    run = run_module("src.train", *TINY, f"hydra.run.dir={read_only_disk / 'run'}")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"cannot create a file in {read_only_disk}: Read-only file system" in run.stderr
    assert "paths.log_dir" not in run.stderr  # it would not move a folder given by hydra.run.dir=
    # the default folder, under paths.log_dir: moving that is a way out
    default = run_module("src.train", *TINY, f"paths.log_dir={read_only_disk / 'outputs'}")
    assert default.returncode == 2 and "or set paths.log_dir=<a writable folder>" in default.stderr, default.stderr

    sweep = run_module("src.train", "-m", *TINY, "seed=1,2", f"hydra.sweep.dir={read_only_disk / 'sweep'}")
    assert sweep.returncode == 2 and "Traceback" not in sweep.stderr, sweep.stderr[-2000:]
    assert f"hydra.sweep.dir={read_only_disk / 'sweep'}: the output folder cannot be written" in sweep.stderr

    report = subprocess.run(
        [sys.executable, "-m", "src.report", str(read_only_disk)], cwd=ROOT, capture_output=True, text=True
    )
    assert report.returncode == 2 and "Traceback" not in report.stderr, report.stderr[-2000:]
    assert "the report cannot be written there" in report.stderr and "Read-only file system" in report.stderr


# -- a full disk ----------------------------------------------------------------------------------------------------
def test_a_disk_too_small_for_the_checkpoints_is_refused_before_training(tmp_path: Path, data_dir):
    disk = tmp_path / "tiny"
    mount_tmpfs(disk, "1200k")
    try:
        result = run_module("src.train", *TINY, QUIET, f"hydra.run.dir={disk / 'run'}")
        assert result.returncode == DISK_FULL, result.stderr[-2000:]
        assert f"Disk full before training: {disk / 'run'} has 1.2 MiB free" in result.stderr
        assert "Nothing was trained" in result.stderr and "Traceback" not in result.stderr
        assert json.loads((disk / "run" / "metrics.json").read_text())["status"] == "disk full"
        assert not (disk / "run" / "checkpoints").exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_mid_run_keeps_the_last_checkpoint_and_says_how_to_go_on(
    small_disk: Path, tmp_path: Path, data_dir
):
    recipe = [*SHORT, "seed=3"]
    run, last = small_disk / "run", small_disk / "run" / "checkpoints" / "last.ckpt"
    proc = start_after_first_checkpoint(run, *recipe)
    fill(small_disk)
    _, stderr = proc.communicate(timeout=300)

    assert proc.returncode == DISK_FULL, stderr[-3000:]
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr[-3000:]
    assert f"Disk full: No space left on device while writing to {run} (0 B free there)" in stderr
    assert f"Kept: {last} (saved after epoch 0" in stderr
    kept = torch.load(last, map_location="cpu", weights_only=True)
    assert kept["epoch"] == 0
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")], "a torn file was left"

    # Space freed, the printed command continues the run: it ends where a run never interrupted ends.
    (small_disk / "filler").unlink()
    command = stderr.split("continue with:\n", 1)[1].splitlines()[0].strip()
    assert command.endswith(f"resume={run}")
    resumed, whole = tmp_path / "resumed", tmp_path / "whole"
    args = shlex.split(command)[3:]  # after "python -m src.train"
    result = run_module("src.train", *args, f"hydra.run.dir={resumed}")
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_module("src.train", *recipe, QUIET, f"hydra.run.dir={whole}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert same_weights(resumed, whole), "the resumed run's weights differ from the uninterrupted run's"


# -- data files that change between a run and its resume ------------------------------------------------------------
def test_a_data_file_truncated_before_a_resume_is_refused_naming_it(tmp_path: Path, data_dir):
    data = tmp_path / "data"
    shutil.copytree(data_dir / "MNIST", data / "MNIST")
    run = tmp_path / "run"
    env = {"DATA_DIR": str(data)}
    first = run_module("src.train", *TINY, QUIET, f"hydra.run.dir={run}", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    images = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
    with open(images, "r+b") as f:
        f.truncate(images.stat().st_size - 784)

    result = run_module("src.train", *TINY, QUIET, f"resume={run}", f"hydra.run.dir={tmp_path / 'resumed'}", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"{images}: truncated" in result.stderr
    torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # the run's checkpoint is untouched


# -- TensorBoard's writer failing -------------------------------------------------------------------------------------
def remove_while_written(folder: Path) -> None:
    """``rm -rf`` of a folder that a running process still writes into: a file it creates between rmtree's listing and
    its removal of the folder fails that attempt (ENOTEMPTY), so the removal is tried again, as a user would."""
    for _ in range(50):
        try:
            shutil.rmtree(folder)
            return
        except OSError:
            continue
    pytest.fail(f"{folder} was still being written into after 50 attempts to remove it")


def test_removing_the_run_folder_mid_run_stops_tensorboard_not_the_training(tmp_path: Path, data_dir):
    """The run folder (TensorBoard's events, the first checkpoints) removed during training: TensorBoard's next flush
    fails (log_every_n_steps=1 flushes each step), which is one warning; the training ends as it would have, writing
    its later checkpoints and its record again."""
    recipe = [*SHORT, "trainer.log_every_n_steps=1", "seed=5"]
    run, whole = tmp_path / "run", tmp_path / "whole"
    proc = start_after_first_checkpoint(run, *recipe)
    remove_while_written(run)
    _, stderr = proc.communicate(timeout=300)

    assert proc.returncode == 0, stderr[-3000:]
    assert stderr.count("TensorBoard's events in") == 1 and "can no longer be written" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 2
    result = run_module("src.train", *recipe, QUIET, f"hydra.run.dir={whole}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert same_weights(run, whole), "the training was not the one a run left alone does"
