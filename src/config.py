"""Config helpers shared by every entry point: resolvers the configs use."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    # ${project_root:} makes default paths independent of the folder the user runs from;
    # ${pid:} keeps two runs started in the same second in separate folders.
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", lambda: str(os.getpid()))


register_resolvers()


class ConfigError(ValueError):
    """A config value that cannot work; raised before anything is downloaded, written or trained."""


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate(cfg: DictConfig) -> None:
    """Check the values a user types most, naming the key, the bad value and what is allowed.

    All problems are reported at once. Unknown keys and options are Hydra's job (it stops at composition).
    """
    from src.data.datamodule import DATASETS, PIPELINES
    from src.models.lenet5 import ACTIVATIONS, INITS, POOLINGS

    errors: list[str] = []

    def check(key: str, ok: Callable[[Any], bool], allowed: str) -> None:
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is _MISSING:
            return
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            errors.append(f"{key}={value!r}: {allowed}")

    def choice(key: str, valid: Iterable[str]) -> None:
        valid = list(valid)
        check(key, lambda v: v in valid, f"choose one of {', '.join(valid)}")

    choice("model.activation", ACTIVATIONS)
    choice("model.pooling", POOLINGS)
    choice("model.init", INITS)
    check("model.in_channels", lambda v: _is_int(v) and v > 0, "must be an integer > 0")
    check("model.num_classes", lambda v: _is_int(v) and v > 1, "must be an integer > 1")
    choice("data.dataset", DATASETS)
    choice("data.pipeline", PIPELINES)
    check("data.batch_size", lambda v: _is_int(v) and v > 0, "must be an integer > 0")
    check("data.eval_batch_size", lambda v: _is_int(v) and v > 0, "must be an integer > 0")
    check("data.val_size", lambda v: _is_int(v) and 0 < v < 60_000, "must be an integer in 1..59999")
    check("data.pad", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0")
    check("data.num_workers", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0")
    check("optimizer.lr", lambda v: _is_number(v) and v > 0, "must be a number > 0")
    check("optimizer.momentum", lambda v: _is_number(v) and 0 <= v < 1, "must be a number in [0, 1)")
    check("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "must be a number >= 0")
    check("optimizer.betas", lambda v: len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
          "must be two numbers in [0, 1)")  # fmt: skip
    check("trainer.max_epochs", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0")
    check("trainer.gradient_clip_val", lambda v: v is None or (_is_number(v) and v > 0), "must be null or a number > 0")
    check("seed", _is_int, "must be an integer")
    for key in ("ckpt_path",):
        check(key, lambda v: v is None or Path(v).is_file(), "no such checkpoint file")
    if errors:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(errors))


_MISSING = object()
