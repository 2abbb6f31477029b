"""The recipe every variant shares: seed, SGD settings, and where the data is (the composed config's own
``paths.data_dir``: DATA_DIR when set, else the project's data/)."""

from __future__ import annotations

from functools import cache

from src.core.config import compose_config

SEED, LR, MOMENTUM = 42, 0.05, 0.9  # the benchmark's recipe for every variant
AUGMENT = "affine"  # the augment variant: the costliest option (rotation and zoom resample every image)


@cache
def data_dir() -> str:
    return str(compose_config().paths.data_dir)


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
