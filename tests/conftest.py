"""Shared fixtures: the real data, and real checkpoints trained on it once per test session."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers import compose_config, run_module


@pytest.fixture
def cfg() -> Callable[..., DictConfig]:
    """``cfg("experiment=fast_mnist", "optimizer=adam")``: the config those overrides compose (``config_name=`` for
    another entry point's)."""
    return compose_config


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real MNIST and Fashion-MNIST IDX files, where ``src.train`` finds them: ``paths.data_dir`` (DATA_DIR when
    set, else the project's own data/), downloaded there first when they are missing and the machine is online."""
    from src.data import DATASETS, MNISTDataModule
    from src.errors import DataNotFoundError

    root = Path(compose_config().paths.data_dir)
    try:
        for dataset in DATASETS:
            MNISTDataModule(dataset=dataset, data_dir=str(root)).prepare_data()
    except DataNotFoundError as exc:
        pytest.fail(f"the tests read the real data sets: {exc}")
    return root


@dataclass(frozen=True)
class TrainedRun:
    run: Path  # the run folder
    ckpt: Path  # its best checkpoint (by val/acc)
    test_acc: float


def train_once(folder: Path, *overrides: str) -> TrainedRun:
    result = run_module("src.train", *overrides, "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={folder}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((folder / "metrics.json").read_text())
    return TrainedRun(folder, Path(summary["best_checkpoint"]), summary["metrics"]["test/acc"])


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TrainedRun:
    """One full epoch of the fast recipe on real MNIST (about 98% test accuracy): for every test that needs a trained
    digit classifier."""
    return train_once(tmp_path_factory.mktemp("mnist_run"), "experiment=fast_mnist", "trainer.max_epochs=1")


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TrainedRun:
    """One full epoch of the default recipe on real Fashion-MNIST (about 85% test accuracy)."""
    return train_once(tmp_path_factory.mktemp("fashion_run"), "data=fashion_mnist", "trainer.max_epochs=1")
