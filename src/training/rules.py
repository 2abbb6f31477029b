"""What ``src.train`` checks before it downloads, writes or trains anything: every value a user types, each naming the
key, the bad value and what is allowed, all reported at once. Unknown keys and options are Hydra's to refuse.

Each group's rules live beside what they configure (the network's in ``src.models.lenet5``, the data's in
``src.data.datamodule``, ...), which checks its own arguments with them too; the rest are here.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from src.core.settings import Check, Rule, accelerator_check, check, choice, flag, integer, is_int, is_number
from src.data.augment import AUGMENT_RULES, classic_distortions, mirrored_digits
from src.data.datamodule import DATA_RULES
from src.models.networks import network_problems
from src.training.adversarial import ADVERSARIAL_RULES
from src.training.callbacks.diagnostics import DIAGNOSTICS_RULES
from src.training.callbacks.tensorboard import TENSORBOARD_RULES
from src.training.curvature import CURVATURES, SOURCES
from src.training.sdlm import is_sdlm
from src.training.trackers import tracker_problems

TRAINING_RULES = [
    Rule("optimizer.lr", lambda v: is_number(v) and v > 0, "must be a number > 0"),
    Rule("optimizer.momentum", lambda v: is_number(v) and 0 <= v < 1, "must be a number in [0, 1)"),
    Rule("optimizer.weight_decay", lambda v: is_number(v) and v >= 0, "must be a number >= 0"),
    Rule(
        "optimizer.betas",
        lambda v: len(v) == 2 and all(is_number(b) and 0 <= b < 1 for b in v),
        "must be two numbers in [0, 1)",
    ),
    Rule("optimizer.mu", lambda v: is_number(v) and v > 0, "must be a number > 0 (SDLM's margin; the paper: 0.02)"),
    integer("optimizer.curvature_patterns", 1, note="training patterns per curvature estimate; the paper: 500"),
    choice("optimizer.curvature", tuple(CURVATURES)),
    choice("optimizer.curvature_from", SOURCES),
    integer("optimizer.ns_steps", 1, note="Muon's Newton-Schulz iterations a step; 5 by default"),
    Rule(
        "optimizer.plain_lr_scale",
        lambda v: is_number(v) and v > 0,
        "must be a number > 0 (Muon's SGD-stepped rate / lr)",
    ),
    integer("trainer.max_epochs", 0),
    *(
        Rule(
            f"trainer.limit_{split}_batches",
            # Lightning's own reading: a float over 1 that is whole counts batches (10.0 as 10)
            lambda v: v is None or (is_int(v) and v >= 0) or (isinstance(v, float) and (0 <= v <= 1 or v.is_integer())),
            "must be null (all), a number of batches (an integer >= 0) or a fraction in [0.0, 1.0]",
        )
        for split in ("train", "val", "test")
    ),
    Rule("trainer.gradient_clip_val", lambda v: v is None or (is_number(v) and v > 0), "must be null or a number > 0"),
    integer("seed"),
    Rule("label_smoothing", lambda v: is_number(v) and 0 <= v < 1, "must be a number in [0, 1)"),
    flag("lr_find.enabled"),
    flag("lr_find.apply"),
    Rule("lr_find.min_lr", lambda v: is_number(v) and v > 0, "must be a number > 0"),
    integer("lr_find.num_training", 2),
    Rule("torch_threads", lambda v: v is None or (is_int(v) and v > 0), "must be null or an integer > 0"),
    flag("reuse_cpu_memory"),
    flag("per_pattern_updates"),
    Rule("ckpt_path", lambda v: v is None or Path(v).is_file(), "no such checkpoint file"),
]
SCHEDULER_OPTIONS = ("interval", "monitor")  # read by the LightningModule, not passed to the scheduler


def check_training_config(cfg: DictConfig, rules: Iterable[Rule] = (), *checks: Check) -> None:
    """Every rule and check of a training config (``src.train``, and the parts that ``src.summary`` and ``src.eval``
    compose), with a command's own ``rules`` and ``checks``; one ``ConfigError`` listing all the problems."""
    groups = [
        *DATA_RULES,
        *AUGMENT_RULES,
        *TRAINING_RULES,
        *ADVERSARIAL_RULES,
        *DIAGNOSTICS_RULES,
        *TENSORBOARD_RULES,
    ]
    check(
        cfg,
        [*groups, *rules],
        *checks,
        network_problems,
        mirrored_digits,
        classic_distortions,
        learning_rate_range,
        finder_problems,
        no_choice_on_the_test_set,
        per_pattern_limits,
        momentum_to_cycle,
        penalty_needs_rbf_units,
        normalisation_given_twice,
        accelerator_check("trainer.accelerator"),
        unknown_arguments,
        tracker_problems,
    )


def learning_rate_range(cfg: DictConfig) -> list[str]:
    lowest = OmegaConf.select(cfg, "lr_find.min_lr", default=0)
    lowest = lowest if is_number(lowest) else 0
    rule = Rule(
        "lr_find.max_lr", lambda v: is_number(v) and v > lowest, f"must be a number > lr_find.min_lr ({lowest})"
    )
    return [problem] if (problem := rule.problem(cfg)) else []


def finder_problems(cfg: DictConfig) -> list[str]:
    """Where Lightning's learning-rate finder cannot run: from a checkpoint, with per-pattern updates (its rising rate
    is a schedule Lightning steps only under automatic optimization) or with SDLM (its trial steps would come before
    the first curvature estimate, made as each training pass starts)."""
    if OmegaConf.select(cfg, "lr_find.enabled") is not True:
        return []
    problems = [
        f"lr_find.enabled=true with {key}={value}: the finder's trial steps would start from the checkpoint's "
        f"weights; find the lr on a fresh run (without {key}), or lr_find.enabled=false"
        for key in ("resume", "ckpt_path")
        if (value := OmegaConf.select(cfg, key)) is not None
    ]
    if OmegaConf.select(cfg, "per_pattern_updates") is True:
        problems.append(
            "lr_find.enabled=true with per_pattern_updates=true: the finder raises the rate by a schedule that "
            "Lightning steps only with one optimizer step per batch; set per_pattern_updates=false or "
            "lr_find.enabled=false"
        )
    target = OmegaConf.select(cfg, "optimizer._target_")
    if is_sdlm(target):
        problems.append(
            f"lr_find.enabled=true with optimizer._target_={target}: SDLM steps only after its first curvature "
            f"estimate, made as training starts, after the finder's trial steps; use lr_find.enabled=false "
            f"(scheduler=lecun1998 gives the paper's rates)"
        )
    return problems


def no_choice_on_the_test_set(cfg: DictConfig) -> list[str]:
    """data.val_size=0 validates on the test set: a checkpoint chosen by it would be chosen on the test set."""
    monitor = OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor", default=None)
    if OmegaConf.select(cfg, "data.val_size") == 0 and monitor is not None:
        return [
            f"data.val_size=0 with callbacks.model_checkpoint.monitor={monitor!r}: without a validation split the "
            f"validation loop reads the test set, and the tested checkpoint would be chosen on it; add "
            f"callbacks.model_checkpoint.monitor=null (the last epoch is tested) or keep a validation split"
        ]
    return []


def per_pattern_limits(cfg: DictConfig) -> list[str]:
    """Per-pattern updates step the optimizer inside the training step (Lightning's manual optimization): Lightning
    then neither clips gradients nor steps a schedule per batch or by a monitored metric."""
    if OmegaConf.select(cfg, "per_pattern_updates") is not True:
        return []
    problems = []
    if OmegaConf.select(cfg, "trainer.gradient_clip_val") is not None:
        clip = OmegaConf.select(cfg, "trainer.gradient_clip_val")
        problems.append(f"trainer.gradient_clip_val={clip} with per_pattern_updates=true: not applied; set it to null")
    scheduler = OmegaConf.select(cfg, "scheduler") or {}
    if scheduler and (scheduler.get("interval", "epoch") != "epoch" or scheduler.get("monitor")):
        problems.append(
            f"scheduler._target_={scheduler.get('_target_')} (interval {scheduler.get('interval', 'epoch')}, monitor "
            f"{scheduler.get('monitor')}) with per_pattern_updates=true: only a schedule stepped once per epoch "
            f"without a monitored metric is stepped (scheduler=step, cosine, lecun1998 or none)"
        )
    return problems


def momentum_to_cycle(cfg: DictConfig) -> list[str]:
    """One-cycle also cycles the optimizer's momentum unless told not to: an optimizer without one (SDLM) fails."""
    scheduler, optimizer = OmegaConf.select(cfg, "scheduler") or {}, OmegaConf.select(cfg, "optimizer") or {}
    cycles = str(scheduler.get("_target_", "")).endswith("OneCycleLR") and scheduler.get("cycle_momentum", True)
    if cycles and "momentum" not in optimizer and "betas" not in optimizer:
        switch_off = ("" if "cycle_momentum" in scheduler else "+") + "scheduler.cycle_momentum=false"  # Hydra's syntax
        return [
            f"scheduler=onecycle with optimizer._target_={optimizer.get('_target_')}: one-cycle cycles the momentum, "
            f"which this optimizer has none of; choose scheduler=lecun1998, step, cosine or none, or set {switch_off}"
        ]
    return []


def penalty_needs_rbf_units(cfg: DictConfig) -> list[str]:
    """SDLM's curvature from the correct class's penalty: only LeNet1998's RBF units have one (a logit is linear)."""
    if OmegaConf.select(cfg, "optimizer.curvature_from") != "penalty":
        return []
    model = OmegaConf.select(cfg, "model") or {}
    if str(model.get("_target_", "")).endswith("LeNet1998") and model.get("output") == "rbf":
        return []
    output = f" model.output={model.get('output')}" if "output" in model else ""
    return [
        f"optimizer.curvature_from=penalty with model._target_={model.get('_target_')}{output}: only the RBF units of "
        f"model=lenet5_1998 (model.output=rbf) have a penalty to start the curvature from; use "
        f"optimizer.curvature_from=loss"
    ]


def normalisation_given_twice(cfg: DictConfig) -> list[str]:
    if OmegaConf.select(cfg, "data.pixel_range") is not None and OmegaConf.select(cfg, "data.normalize") is False:
        return ["data.pixel_range and data.normalize=false: two normalisations; drop one of them"]
    return []


def unknown_arguments(cfg: DictConfig) -> list[str]:
    """Keys of the optimizer or scheduler config that its class does not take (momentum left over for Adam)."""
    problems = []
    for group in ("optimizer", "scheduler"):
        node = cfg.get(group)
        if not node or "_target_" not in node:
            continue
        try:
            params = inspect.signature(get_class(node._target_)).parameters
        except Exception as exc:
            problems.append(f"{group}._target_={node._target_!r}: cannot be imported ({exc})")
            continue
        valid = [p for p in params if p not in ("self", "params", "optimizer")]
        problems += [
            f"{group}.{key}: not an argument of {node._target_} (valid: {', '.join(valid)})"
            for key in node
            if not str(key).startswith("_") and key not in params and key not in SCHEDULER_OPTIONS
        ]
    return problems
