"""The recipe every variant shares: seed, SGD settings, where the data is, and the config src.train composes."""

from __future__ import annotations

import os
from typing import Any

from src.config import PROJECT_ROOT

SEED, LR, MOMENTUM = 42, 0.05, 0.9  # the benchmark's recipe for every variant
AUGMENT = "affine"  # the augment variant: the costliest option (rotation and zoom resample every image)


def data_dir() -> str:
    return os.environ.get("DATA_DIR", str(PROJECT_ROOT / "data"))


def recipe_overrides(epochs: int, batch_size: int) -> list[str]:
    """The src.train overrides that give a run the benchmark's recipe."""
    # Every knob the textbook loop fixes, so that a change of src.train's default recipe leaves the comparison alone.
    return [
        f"trainer.max_epochs={epochs}",
        f"data.batch_size={batch_size}",
        "scheduler=none",
        "augment=none",
        "model.activation=relu",
        "model.pooling=max",
        "model.init=default",
        "optimizer=sgd",
        f"optimizer.lr={LR}",
        f"optimizer.momentum={MOMENTUM}",
        "optimizer.nesterov=false",
        f"seed={SEED}",
        f"paths.data_dir={data_dir()}",
    ]


def compose_config(overrides: list[str]) -> Any:
    """The same composed config ``src.train`` would run with these overrides."""
    from hydra import compose, initialize_config_dir

    from src.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)
