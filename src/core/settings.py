"""Config values, checked one way by every entry point before any work.

A ``Rule`` names a key, the test its value must pass and what is allowed; a check that spans keys is a function from
the config to the problems it finds. ``check`` applies a command's rules and checks and raises one ``ConfigError``
that lists every problem, each naming the key, the bad value and the valid ones (the entry points then exit 2).
A key the config does not have is not checked: one rule list serves every config that holds some of its keys.

Why not Hydra's structured configs: OmegaConf validates types alone, stops at the first bad value, and reports it as
its own exception (exit 1); a user here gets every problem at once, with ranges and the valid choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.core.errors import ConfigError

_MISSING = object()


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_list(value: object) -> list:
    """A config value as a plain list: a list as it is, one value as a list of it, null or "" as []."""
    value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class Rule:
    """``key``'s value must pass ``ok``; otherwise the problem is ``key=<value>: <allowed>``."""

    key: str
    ok: Callable[[Any], bool]
    allowed: str

    def problem(self, cfg: DictConfig) -> str | None:
        value = OmegaConf.select(cfg, self.key, default=_MISSING)
        if value is _MISSING:
            return None
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        try:
            good = self.ok(value)
        except (TypeError, ValueError):
            good = False
        return None if good else f"{self.key}={value!r}: {self.allowed}"


Check = Callable[[DictConfig], Iterable[str]]  # a check that spans keys: the problems it finds, one line each


def check(cfg: DictConfig | Mapping[str, Any], rules: Iterable[Rule], *checks: Check) -> None:
    """Apply every rule and check to ``cfg`` (a composed config, or a plain mapping of the same shape); raise one
    ``ConfigError`` listing all the problems found, if any."""
    if not OmegaConf.is_config(cfg):
        cfg = OmegaConf.create(dict(cfg))
    problems = [line for rule in rules if (line := rule.problem(cfg)) is not None]
    for spanning in checks:
        problems += list(spanning(cfg))
    if problems:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(problems))


# -- the rules that recur ---------------------------------------------------------------------------------------------
def choice(key: str, valid: Iterable[str]) -> Rule:
    valid = list(valid)
    return Rule(key, lambda v: v in valid, f"choose one of {', '.join(valid)}")


def choices(key: str, valid: Iterable[str], what: str = "a list of some of") -> Rule:
    """A non-empty list whose every item is one of ``valid`` (one value counts as a list of it)."""
    valid = list(valid)
    return Rule(key, lambda v: bool(as_list(v)) and all(x in valid for x in as_list(v)), f"{what} {', '.join(valid)}")


def flag(key: str) -> Rule:
    return Rule(key, lambda v: isinstance(v, bool), "must be true or false")


def integer(key: str, low: int | None = None, high: int | None = None, note: str = "") -> Rule:
    """An integer, at least ``low`` and at most ``high`` where given; ``note`` says what it means, in brackets."""
    if low is not None and high is not None:
        allowed = f"must be an integer in {low}..{high}"
    elif low is not None:
        allowed = f"must be an integer >= {low}"
    else:
        allowed = "must be an integer"
    return Rule(
        key,
        lambda v: is_int(v) and (low is None or v >= low) and (high is None or v <= high),
        f"{allowed} ({note})" if note else allowed,
    )


def positive_integer(key: str) -> Rule:
    return Rule(key, lambda v: is_int(v) and v > 0, "must be an integer > 0")


def required(key: str, example: str) -> Check:
    """A value the command cannot do without: missing, null, "" or [] is the problem ``<key> is required, e.g.: ...``."""

    def missing(cfg: DictConfig) -> list[str]:
        value = OmegaConf.select(cfg, key, default=None)
        return [] if as_list(value) else [f"{key} is required, e.g.: {example}"]

    return missing


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def accelerator_check(key: str, valid: Iterable[str] = ACCELERATORS) -> Check:
    """``key`` must name an accelerator this machine has (a missing GPU is refused before any work)."""

    valid = list(valid)

    def here(cfg: DictConfig) -> list[str]:
        import torch

        value = OmegaConf.select(cfg, key)
        if value is None:
            return []
        if value not in valid:
            return [f"{key}={value!r}: choose one of {', '.join(valid)}"]
        has_cuda, has_mps = torch.cuda.is_available(), torch.backends.mps.is_available()
        fix = f"use {key}=auto (the GPU when there is one, else the CPU) or {key}=cpu"
        if value == "cuda" and not has_cuda or value == "gpu" and not (has_cuda or has_mps):
            return [f"{key}={value!r}: this machine has no CUDA GPU (torch.cuda.is_available() is False); {fix}"]
        if value == "mps" and not has_mps:
            return [f"{key}={value!r}: this machine has no Apple MPS GPU; {fix}"]
        return []

    return here
