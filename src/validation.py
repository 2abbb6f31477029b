"""What a run checks before any work: the config's values (``validate``), then what it resumes (``preflight``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.callbacks.diagnostics import DIAGNOSTICS
from src.checkpoints import ResumePoint, resolve_resume
from src.checks import Problems, is_int, is_number
from src.data.datamodule import PIPELINES
from src.data.datasets import DATASETS, padded_size
from src.models.lenet5 import ACTIVATIONS, INITS, POOLINGS, max_conv_layers, size_problem


def preflight(cfg: DictConfig) -> ResumePoint | None:
    """Everything ``src.train`` checks before it downloads, writes or trains anything, in one call: the config's values,
    then the checkpoint the run resumes from (chosen by the resume policy, loaded once and checked), if any."""
    validate(cfg)
    return resolve_resume(cfg)


def validate(cfg: DictConfig) -> None:
    """Check the values a user types most, naming the key, the bad value and what is allowed.

    All problems are reported at once. Unknown keys and options are Hydra's job (it stops at composition).
    """
    problems = Problems(cfg)
    check, choice = problems.check, problems.choice
    choice("model.activation", ACTIVATIONS)
    choice("model.pooling", POOLINGS)
    choice("model.init", INITS)
    check("model.in_channels", lambda v: is_int(v) and v > 0, "must be an integer > 0")
    check("model.num_classes", lambda v: is_int(v) and v > 1, "must be an integer > 1")
    check("model.batch_norm", lambda v: isinstance(v, bool), "must be true or false")
    check("model.dropout", lambda v: is_number(v) and 0 <= v < 1, "must be a number in [0, 1)")
    check(
        "model.channels",
        lambda v: len(v) >= 1 and all(is_int(c) and c > 0 for c in v),
        "must be a list of one or more integers > 0, one conv layer each, e.g. [6, 16]",
    )
    check(
        "model.hidden",
        lambda v: all(is_int(c) and c > 0 for c in v),
        "must be a list of integers > 0, one hidden linear layer each, e.g. [120, 84] ([]: none)",
    )
    check("model.padding", lambda v: is_int(v) and v >= 0, "must be an integer >= 0")
    pad = OmegaConf.select(cfg, "data.pad", default=2)
    side = padded_size(pad if is_int(pad) and pad >= 0 else 2)
    padding = OmegaConf.select(cfg, "model.padding", default=0)
    padding = padding if is_int(padding) and padding >= 0 else 0
    largest = max((k for k in range(1, side + 2 * padding + 1) if max_conv_layers(k, side, padding) > 0), default=0)
    check(
        "model.kernel_size",
        lambda v: is_int(v) and 0 < v <= largest,
        f"must be an integer in 1..{largest} (the feature maps of a {side}x{side} input must not vanish)",
    )
    channels, kernel = OmegaConf.select(cfg, "model.channels"), OmegaConf.select(cfg, "model.kernel_size")
    if channels and all(is_int(c) and c > 0 for c in channels) and is_int(kernel) and 0 < kernel <= largest:
        if (problem := size_problem(list(channels), kernel, side, padding)) is not None:
            problems.add(problem)
    choice("data.dataset", DATASETS)
    choice("data.pipeline", PIPELINES)
    check("data.batch_size", lambda v: is_int(v) and v > 0, "must be an integer > 0")
    check("data.eval_batch_size", lambda v: is_int(v) and v > 0, "must be an integer > 0")
    check("data.val_size", lambda v: is_int(v) and 0 < v < 60_000, "must be an integer in 1..59999")
    check("data.pad", lambda v: is_int(v) and v >= 0, "must be an integer >= 0")
    check("data.num_workers", lambda v: is_int(v) and v >= 0, "must be an integer >= 0")
    check("data.normalize", lambda v: isinstance(v, bool), "must be true or false")
    check("augment.translate", lambda v: is_int(v) and 0 <= v <= 8, "must be an integer in 0..8 (pixels)")
    check("augment.degrees", lambda v: is_number(v) and 0 <= v <= 180, "must be a number in [0, 180]")
    check(
        "augment.scale",
        lambda v: len(v) == 2 and all(is_number(z) and z > 0 for z in v) and v[0] <= v[1],
        "must be two numbers > 0, the smaller first, e.g. [0.9, 1.1]",
    )
    check("augment.flip", lambda v: is_number(v) and 0 <= v <= 1, "must be a probability in [0, 1]")
    flip = OmegaConf.select(cfg, "augment.flip", default=0)
    if OmegaConf.select(cfg, "data.dataset") == "mnist" and is_number(flip) and flip > 0:
        problems.add(
            f"augment.flip={flip!r} with data=mnist: a mirrored digit is another shape (a mirrored 2 is "
            f"not a 2); use augment=shift or augment=affine for digits, or augment.flip=0"
        )
    check("optimizer.lr", lambda v: is_number(v) and v > 0, "must be a number > 0")
    check("optimizer.momentum", lambda v: is_number(v) and 0 <= v < 1, "must be a number in [0, 1)")
    check("optimizer.weight_decay", lambda v: is_number(v) and v >= 0, "must be a number >= 0")
    check(
        "optimizer.betas",
        lambda v: len(v) == 2 and all(is_number(b) and 0 <= b < 1 for b in v),
        "must be two numbers in [0, 1)",
    )
    check("trainer.max_epochs", lambda v: is_int(v) and v >= 0, "must be an integer >= 0")
    check("trainer.gradient_clip_val", lambda v: v is None or (is_number(v) and v > 0), "must be null or a number > 0")
    if (problem := _accelerator_problem(OmegaConf.select(cfg, "trainer.accelerator"))) is not None:
        problems.add(problem)
    check("seed", is_int, "must be an integer")
    check("label_smoothing", lambda v: is_number(v) and 0 <= v < 1, "must be a number in [0, 1)")
    check(
        "adversarial.epsilon",
        lambda v: is_number(v) and 0 <= v <= 1,
        "must be a number in [0, 1] (pixel units of [0, 1] images; 0: no adversarial training)",
    )
    check("adversarial.steps", lambda v: is_int(v) and v >= 1, "must be an integer >= 1")
    check(
        "adversarial.step_size",
        lambda v: v is None or (is_number(v) and 0 < v <= 1),
        "must be null (2.5 * epsilon / steps) or a number in (0, 1]",
    )
    check("callbacks.diagnostics.every_n_steps", lambda v: is_int(v) and v >= 0, "must be an integer >= 0 (0: off)")
    check(
        "callbacks.diagnostics.checks",
        lambda v: all(c in DIAGNOSTICS for c in v),
        f"each must be one of {', '.join(DIAGNOSTICS)}",
    )
    check("lr_find.enabled", lambda v: isinstance(v, bool), "must be true or false")
    check("lr_find.apply", lambda v: isinstance(v, bool), "must be true or false")
    check("lr_find.min_lr", lambda v: is_number(v) and v > 0, "must be a number > 0")
    lowest = OmegaConf.select(cfg, "lr_find.min_lr", default=0)
    check("lr_find.max_lr", lambda v: is_number(v) and v > lowest, f"must be a number > lr_find.min_lr ({lowest})")
    check("lr_find.num_training", lambda v: is_int(v) and v >= 2, "must be an integer >= 2")
    if OmegaConf.select(cfg, "lr_find.enabled") is True:
        for key in ("resume", "ckpt_path"):
            if (value := OmegaConf.select(cfg, key)) is not None:
                problems.add(
                    f"lr_find.enabled=true with {key}={value}: the finder's trial steps would start from the "
                    f"checkpoint's weights; find the lr on a fresh run (without {key}), or lr_find.enabled=false"
                )
    check("torch_threads", lambda v: v is None or (is_int(v) and v > 0), "must be null or an integer > 0")
    check("reuse_cpu_memory", lambda v: isinstance(v, bool), "must be true or false")
    for group in ("optimizer", "scheduler"):
        for line in _unknown_arguments(cfg, group):
            problems.add(line)
    for key in ("ckpt_path",):
        check(key, lambda v: v is None or Path(v).is_file(), "no such checkpoint file")
    problems.raise_if_any()


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def _accelerator_problem(value: Any) -> str | None:
    """Why ``trainer.accelerator=value`` cannot run on this machine (None if it can, or if the key is unset)."""
    import torch

    if value is None:
        return None
    if value not in ACCELERATORS:
        return f"trainer.accelerator={value!r}: choose one of {', '.join(ACCELERATORS)}"
    has_cuda, has_mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    fix = "use trainer.accelerator=auto (the GPU when there is one, else the CPU) or trainer.accelerator=cpu"
    if value == "cuda" and not has_cuda or value == "gpu" and not (has_cuda or has_mps):
        return (
            f"trainer.accelerator={value!r}: this machine has no CUDA GPU (torch.cuda.is_available() is False); {fix}"
        )
    if value == "mps" and not has_mps:
        return f"trainer.accelerator={value!r}: this machine has no Apple MPS GPU; {fix}"
    return None


SCHEDULER_OPTIONS = ("interval", "monitor")  # read by the LightningModule, not passed to the scheduler


def _unknown_arguments(cfg: DictConfig, group: str) -> list[str]:
    """Keys of an optimizer/scheduler config that its class does not take (e.g. momentum left over for Adam)."""
    import inspect

    from hydra.utils import get_class

    node = cfg.get(group)
    if not node or "_target_" not in node:
        return []
    try:
        params = inspect.signature(get_class(node._target_)).parameters
    except Exception as exc:
        return [f"{group}._target_={node._target_!r}: cannot be imported ({exc})"]
    valid = [p for p in params if p not in ("self", "params", "optimizer")]
    return [
        f"{group}.{key}: not an argument of {node._target_} (valid: {', '.join(valid)})"
        for key in node
        if not str(key).startswith("_") and key not in params and key not in SCHEDULER_OPTIONS
    ]
