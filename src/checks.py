"""Small checks of config values that every module can use: each problem names the key, the bad value and what is
allowed, and a command reports all of its problems at once (``Problems``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError

_MISSING = object()


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_choice(key: str, value: object, valid: Iterable[str]) -> None:
    """Raise a ``ConfigError`` naming the key, the bad value and the valid ones."""
    valid = list(valid)
    if value not in valid:
        raise ConfigError(f"{key}={value!r}: choose one of {', '.join(valid)}")


def require(cfg: DictConfig, key: str, example: str) -> Any:
    """A config value the command cannot do without; a missing one is a ``ConfigError`` showing how to pass it."""
    value = cfg.get(key)
    if value is None or value == "" or (isinstance(value, Sequence) and not isinstance(value, str) and not value):
        raise ConfigError(f"{key} is required, e.g.: {example}")
    return value


class Problems:
    """A command's bad config values, collected: ``check`` and ``choice`` note each, ``raise_if_any`` raises one
    ``ConfigError`` listing them all (``Invalid config:``, one line per key)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.lines: list[str] = []

    def check(self, key: str, ok: Callable[[Any], bool], allowed: str) -> None:
        """Note ``key=value: allowed`` unless ``ok(value)``; a key the config does not have is not checked."""
        value = OmegaConf.select(self.cfg, key, default=_MISSING)
        if value is _MISSING:
            return
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            self.lines.append(f"{key}={value!r}: {allowed}")

    def choice(self, key: str, valid: Iterable[str]) -> None:
        valid = list(valid)
        self.check(key, lambda v: v in valid, f"choose one of {', '.join(valid)}")

    def add(self, line: str) -> None:
        self.lines.append(line)

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError("Invalid config:\n  " + "\n  ".join(self.lines))
