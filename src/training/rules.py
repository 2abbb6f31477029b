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

from src.core.settings import Check, Rule, accelerator_check, check, flag, integer, is_int, is_number
from src.data.augment import AUGMENT_RULES, mirrored_digits
from src.data.datamodule import DATA_RULES
from src.models.lenet5 import NETWORK_RULES, network_shape_problems
from src.training.adversarial import ADVERSARIAL_RULES
from src.training.callbacks.diagnostics import DIAGNOSTICS_RULES
from src.training.callbacks.tensorboard import TENSORBOARD_RULES

TRAINING_RULES = [
    Rule("optimizer.lr", lambda v: is_number(v) and v > 0, "must be a number > 0"),
    Rule("optimizer.momentum", lambda v: is_number(v) and 0 <= v < 1, "must be a number in [0, 1)"),
    Rule("optimizer.weight_decay", lambda v: is_number(v) and v >= 0, "must be a number >= 0"),
    Rule(
        "optimizer.betas",
        lambda v: len(v) == 2 and all(is_number(b) and 0 <= b < 1 for b in v),
        "must be two numbers in [0, 1)",
    ),
    integer("trainer.max_epochs", 0),
    Rule("trainer.gradient_clip_val", lambda v: v is None or (is_number(v) and v > 0), "must be null or a number > 0"),
    integer("seed"),
    Rule("label_smoothing", lambda v: is_number(v) and 0 <= v < 1, "must be a number in [0, 1)"),
    flag("lr_find.enabled"),
    flag("lr_find.apply"),
    Rule("lr_find.min_lr", lambda v: is_number(v) and v > 0, "must be a number > 0"),
    integer("lr_find.num_training", 2),
    Rule("torch_threads", lambda v: v is None or (is_int(v) and v > 0), "must be null or an integer > 0"),
    flag("reuse_cpu_memory"),
    Rule("ckpt_path", lambda v: v is None or Path(v).is_file(), "no such checkpoint file"),
]
SCHEDULER_OPTIONS = ("interval", "monitor")  # read by the LightningModule, not passed to the scheduler


def check_training_config(cfg: DictConfig, rules: Iterable[Rule] = (), *checks: Check) -> None:
    """Every rule and check of a training config (``src.train``, and the parts that ``src.summary`` and ``src.eval``
    compose), with a command's own ``rules`` and ``checks``; one ``ConfigError`` listing all the problems."""
    groups = [
        *NETWORK_RULES,
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
        network_shape_problems,
        mirrored_digits,
        learning_rate_range,
        finder_on_a_resumed_run,
        accelerator_check("trainer.accelerator"),
        unknown_arguments,
    )


def learning_rate_range(cfg: DictConfig) -> list[str]:
    lowest = OmegaConf.select(cfg, "lr_find.min_lr", default=0)
    lowest = lowest if is_number(lowest) else 0
    rule = Rule(
        "lr_find.max_lr", lambda v: is_number(v) and v > lowest, f"must be a number > lr_find.min_lr ({lowest})"
    )
    return [problem] if (problem := rule.problem(cfg)) else []


def finder_on_a_resumed_run(cfg: DictConfig) -> list[str]:
    if OmegaConf.select(cfg, "lr_find.enabled") is not True:
        return []
    return [
        f"lr_find.enabled=true with {key}={value}: the finder's trial steps would start from the checkpoint's "
        f"weights; find the lr on a fresh run (without {key}), or lr_find.enabled=false"
        for key in ("resume", "ckpt_path")
        if (value := OmegaConf.select(cfg, key)) is not None
    ]


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
