"""What ``src.trust`` was asked to do, read from its config and checked before any checkpoint is loaded: every bad value
is named with the valid ones, all at once (exit 2)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from src.checks import Problems, is_int, is_number
from src.trust.corruptions import CORRUPTIONS

CHECKS = ("calibration", "corruptions", "attacks", "attributions")
ATTACKS = ("fgsm", "pgd")
SOURCES = ("auto", "generated", "official")
SPLITS = ("test", "val")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
ATTRIBUTION_METHODS = ("saliency", "integrated_gradients", "grad_cam")


@dataclass(frozen=True)
class Settings:
    checks: list[str]
    split: str
    accelerator: str
    seed: int
    limit: int | None
    batch_size: int
    bins: int
    corruptions: list[str] | None  # None: every corruption that suits the data set
    source: str
    corruptions_shown: int
    epsilons: list[float]
    attacks: list[str]
    pgd_steps: int
    pgd_step_size: float | None
    attacks_shown: int
    attribution_methods: list[str]
    attribution_images: int
    ig_steps: int


def _as_list(value: object) -> list:
    value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def read_settings(cfg: DictConfig) -> Settings:
    problems = Problems(cfg)
    listed = lambda valid: lambda v: bool(_as_list(v)) and all(x in valid for x in _as_list(v))  # noqa: E731
    problems.check("checks", listed(CHECKS), f"a list of some of {', '.join(CHECKS)}")
    problems.choice("split", SPLITS)
    problems.choice("accelerator", ACCELERATORS)
    problems.check("seed", is_int, "an integer")
    problems.check("limit", lambda v: v is None or (is_int(v) and v >= 1), "null (all test images) or an integer >= 1")
    problems.check("batch_size", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    problems.check("calibration.bins", lambda v: is_int(v) and v >= 1, "an integer >= 1 (Guo et al.: 15)")
    names = cfg.corruptions.names
    problems.check(
        "corruptions.names",
        lambda v: v == "all" or listed(CORRUPTIONS)(v),
        f"all, or a list of some of {', '.join(CORRUPTIONS)}",
    )
    problems.choice("corruptions.source", SOURCES)
    problems.check(
        "attacks.epsilons",
        lambda v: bool(_as_list(v)) and all(is_number(e) and 0 <= e <= 1 for e in _as_list(v)),
        "a list of numbers in [0, 1] (L-infinity radii in pixel units of [0, 1] images)",
    )
    problems.check("attacks.methods", listed(ATTACKS), f"a list of some of {', '.join(ATTACKS)}")
    problems.check("attacks.pgd_steps", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    problems.check(
        "attacks.pgd_step_size",
        lambda v: v is None or (is_number(v) and 0 < v <= 1),
        "null (2.5 * epsilon / pgd_steps) or a number in (0, 1]",
    )
    problems.check(
        "attributions.methods", listed(ATTRIBUTION_METHODS), f"a list of some of {', '.join(ATTRIBUTION_METHODS)}"
    )
    for key in ("corruptions.shown", "attacks.shown", "attributions.images", "attributions.steps"):
        problems.check(key, lambda v: is_int(v) and v >= 1, "an integer >= 1")
    problems.raise_if_any()
    return Settings(
        checks=[c for c in CHECKS if c in _as_list(cfg.checks)],
        split=cfg.split,
        accelerator=cfg.accelerator,
        seed=cfg.seed,
        limit=cfg.limit,
        batch_size=cfg.batch_size,
        bins=cfg.calibration.bins,
        corruptions=None if names == "all" else list(dict.fromkeys(_as_list(names))),
        source=cfg.corruptions.source,
        corruptions_shown=cfg.corruptions.shown,
        epsilons=sorted({float(e) for e in _as_list(cfg.attacks.epsilons)}),
        attacks=[a for a in ATTACKS if a in _as_list(cfg.attacks.methods)],
        pgd_steps=cfg.attacks.pgd_steps,
        pgd_step_size=None if cfg.attacks.pgd_step_size is None else float(cfg.attacks.pgd_step_size),
        attacks_shown=cfg.attacks.shown,
        attribution_methods=list(dict.fromkeys(_as_list(cfg.attributions.methods))),
        attribution_images=cfg.attributions.images,
        ig_steps=cfg.attributions.steps,
    )
