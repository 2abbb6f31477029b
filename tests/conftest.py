"""Shared fixtures: the real data, and real checkpoints trained on it once per test session.

The suite runs on pytest-xdist workers (``-n 2 --dist loadfile``); the session's checkpoints are trained once for
all of them: the first worker to need one trains it under a file lock, the others wait and read it."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers import compose_config, run_module

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The workers share the machine's cores: each process they start computes on one thread. With OpenMP's default
    # (a thread per core in every process) two concurrent short training runs took 40 s on the 2-core CI machine,
    # with one thread each 20 s.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def cfg() -> Callable[..., DictConfig]:
    """``cfg("experiment=fast_mnist", "optimizer=adam")``: the config those overrides compose (``config_name=`` for
    another entry point's)."""
    return compose_config


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MNIST and Fashion-MNIST IDX files, where ``src.train`` finds them: ``paths.data_dir`` (DATA_DIR when
    set, else the project's own data/), downloaded there first when they are missing and the machine is online."""
    from src.core.errors import DataNotFoundError
    from src.data import DATASETS, MNISTDataModule

    root = Path(compose_config().paths.data_dir)
    with session_lock(tmp_path_factory, "data"):  # one download at a time
        try:
            for dataset in DATASETS:
                MNISTDataModule(dataset=dataset, data_dir=str(root)).prepare_data()
        except DataNotFoundError as exc:
            pytest.fail(f"the tests read the real data sets: {exc}")
    return root


def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every xdist worker of this session shares (each worker's own base temp is inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def session_lock(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """Hold the session-wide lock ``name``: one worker at a time; yields the shared folder ``<root>/<name>``."""
    root = session_root(tmp_path_factory)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root / name


@dataclass(frozen=True)
class TrainedRun:
    run: Path  # the run folder
    ckpt: Path  # its best checkpoint (by val/acc)
    test_acc: float


def train_once(tmp_path_factory: pytest.TempPathFactory, name: str, *overrides: str) -> TrainedRun:
    """``python -m src.train <overrides>`` into the session's shared folder ``name``, unless a worker did already."""
    with session_lock(tmp_path_factory, name) as folder:
        if not (folder / "metrics.json").is_file():
            train(folder, *overrides)
        summary = json.loads((folder / "metrics.json").read_text())
    assert summary["status"] == "completed", f"the session's {name} did not complete: {folder}"
    return TrainedRun(folder, Path(summary["best_checkpoint"]), summary["metrics"]["test/acc"])


def train(folder: Path, *overrides: str) -> None:
    result = run_module("src.train", *overrides, "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={folder}")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TrainedRun:
    """One full epoch of the fast recipe on real MNIST (about 99% test accuracy): for every test that needs a trained
    digit classifier."""
    return train_once(tmp_path_factory, "mnist_run", "experiment=fast_mnist", "trainer.max_epochs=1")


@pytest.fixture(scope="session")
def lecun1998_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TrainedRun:
    """LeCun et al.'s network as the paper trained it (experiment=lecun1998), 2,000 images of one pass (about 88%
    test accuracy): for the tests of every tool on it."""
    return train_once(
        tmp_path_factory, "lecun1998_run", "experiment=lecun1998", "trainer.limit_train_batches=20",
        "trainer.max_epochs=1", "torch_threads=1",
    )  # fmt: skip


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TrainedRun:
    """One full epoch of the default recipe on real Fashion-MNIST (about 85% test accuracy)."""
    return train_once(tmp_path_factory, "fashion_run", "data=fashion_mnist", "trainer.max_epochs=1")
