"""Config helpers shared by every entry point: resolvers the configs use."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError, RunFolderInUse

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    # ${project_root:} makes default paths independent of the folder the user runs from;
    # ${pid:} keeps two runs started in the same second in separate folders.
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("pid"):
        # Cached: a sweep's folder is named once, by the launching process; Hydra hands the cache to joblib and
        # submitit workers (and a requeued SLURM job), which would otherwise resolve their own process id.
        OmegaConf.register_new_resolver("pid", lambda: str(os.getpid()), use_cache=True)
    # ${choice:optimizer} is the option a config group was given (sgd, adam): what the user typed, for TensorBoard.
    if not OmegaConf.has_resolver("choice"):
        OmegaConf.register_new_resolver("choice", group_choice)
    if not OmegaConf.has_resolver("sweep_job_dir"):
        OmegaConf.register_new_resolver("sweep_job_dir", sweep_job_dir)


def group_choice(group: str) -> str | None:
    """The option chosen for a config group in this Hydra run (None outside one, e.g. under Hydra's compose API)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


MAX_NAME = 200  # a folder name must stay under the file systems' 255 bytes


def sweep_job_dir(num: int, job_overrides: Iterable[str], sweep_dir: str) -> str:
    """A sweep job's folder name: its number, then the overrides that vary across the sweep (``1_model.activation=
    tanh,optimizer=adam``), so that TensorBoard, which names runs by folder, names them as the sweep does.

    The sweep's own command line (``multirun.yaml``, written by Hydra's basic sweeper before the jobs start) tells the
    overrides with one value, left out here; a sweeper that writes none (Optuna) gets all the job's overrides.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    constant: set[str] = set()
    sweep_file = Path(sweep_dir) / "multirun.yaml"
    if sweep_file.is_file():
        given = OmegaConf.select(OmegaConf.load(sweep_file), "hydra.overrides.task", default=[]) or []
        constant = {o.key_or_group for o in parser.parse_overrides(list(given)) if not o.is_sweep_override()}
    varying = [
        text
        for text, o in zip(job_overrides, parser.parse_overrides(list(job_overrides)))
        if o.key_or_group not in constant
    ]
    name = ",".join(varying).replace("/", "-")
    if len(name.encode()) > MAX_NAME:
        name = name.encode()[:MAX_NAME].decode(errors="ignore") + "..."
    return f"{num}_{name}" if name else str(num)


register_resolvers()


MNIST_SIDE = 28  # every MNIST and Fashion-MNIST image is 28x28


def padded_size(pad: int) -> int:
    """The side of the images the network sees: MNIST's 28 pixels padded by ``data.pad`` on each side."""
    return MNIST_SIDE + 2 * pad


def network_args(model: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A run's ``model`` group as the network is built: for the images its ``data`` group serves (``data.pad``)."""
    return {**model, "input_size": padded_size(data.get("pad", 2))}


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate(cfg: DictConfig) -> None:
    """Check the values a user types most, naming the key, the bad value and what is allowed.

    All problems are reported at once. Unknown keys and options are Hydra's job (it stops at composition).
    """
    from src.data.datamodule import DATASETS, PIPELINES
    from src.models.lenet5 import ACTIVATIONS, INITS, INPUT_SIZE, POOLINGS, conv_output_side

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
    check("model.batch_norm", lambda v: isinstance(v, bool), "must be true or false")
    check("model.dropout", lambda v: _is_number(v) and 0 <= v < 1, "must be a number in [0, 1)")
    for key in ("model.channels", "model.hidden"):
        check(
            key,
            lambda v: len(v) == 2 and all(_is_int(c) and c > 0 for c in v),
            "must be two integers > 0, e.g. [6, 16]",
        )
    pad = OmegaConf.select(cfg, "data.pad", default=2)
    side = padded_size(pad) if _is_int(pad) else INPUT_SIZE
    largest = max((k for k in range(1, side + 1) if conv_output_side(k, side) > 0), default=0)
    check(
        "model.kernel_size",
        lambda v: _is_int(v) and 0 < v <= largest,
        f"must be an integer in 1..{largest} (the feature maps of a {side}x{side} input must not vanish)",
    )
    choice("data.dataset", DATASETS)
    choice("data.pipeline", PIPELINES)
    check("data.batch_size", lambda v: _is_int(v) and v > 0, "must be an integer > 0")
    check("data.eval_batch_size", lambda v: _is_int(v) and v > 0, "must be an integer > 0")
    check("data.val_size", lambda v: _is_int(v) and 0 < v < 60_000, "must be an integer in 1..59999")
    check("data.pad", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0")
    check("data.num_workers", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0")
    check("data.normalize", lambda v: isinstance(v, bool), "must be true or false")
    check("augment.translate", lambda v: _is_int(v) and 0 <= v <= 8, "must be an integer in 0..8 (pixels)")
    check("augment.degrees", lambda v: _is_number(v) and 0 <= v <= 180, "must be a number in [0, 180]")
    check(
        "augment.scale",
        lambda v: len(v) == 2 and all(_is_number(z) and z > 0 for z in v) and v[0] <= v[1],
        "must be two numbers > 0, the smaller first, e.g. [0.9, 1.1]",
    )
    check("augment.flip", lambda v: _is_number(v) and 0 <= v <= 1, "must be a probability in [0, 1]")
    flip = OmegaConf.select(cfg, "augment.flip", default=0)
    if OmegaConf.select(cfg, "data.dataset") == "mnist" and _is_number(flip) and flip > 0:
        errors.append(
            f"augment.flip={flip!r} with data=mnist: a mirrored digit is another shape (a mirrored 2 is "
            f"not a 2); use augment=shift or augment=affine for digits, or augment.flip=0"
        )
    check("optimizer.lr", lambda v: _is_number(v) and v > 0, "must be a number > 0")
    check("optimizer.momentum", lambda v: _is_number(v) and 0 <= v < 1, "must be a number in [0, 1)")
    check("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "must be a number >= 0")
    check(
        "optimizer.betas",
        lambda v: len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
        "must be two numbers in [0, 1)",
    )
    check("trainer.max_epochs", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0")
    check("trainer.gradient_clip_val", lambda v: v is None or (_is_number(v) and v > 0), "must be null or a number > 0")
    if (problem := _accelerator_problem(OmegaConf.select(cfg, "trainer.accelerator"))) is not None:
        errors.append(problem)
    check("seed", _is_int, "must be an integer")
    check("label_smoothing", lambda v: _is_number(v) and 0 <= v < 1, "must be a number in [0, 1)")
    check("torch_threads", lambda v: v is None or (_is_int(v) and v > 0), "must be null or an integer > 0")
    check("reuse_cpu_memory", lambda v: isinstance(v, bool), "must be true or false")
    for group in ("optimizer", "scheduler"):
        errors += _unknown_arguments(cfg, group)
    for key in ("ckpt_path",):
        check(key, lambda v: v is None or Path(v).is_file(), "no such checkpoint file")
    if errors:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(errors))


_MISSING = object()
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


RECIPE_KEYS = ("data", "model", "optimizer", "scheduler", "seed", "label_smoothing")


def requeue_count() -> int:
    """How many times the cluster scheduler has requeued this job (SLURM's restart count; 0 outside SLURM)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def resolve_resume(cfg: DictConfig) -> str | None:
    """The checkpoint this run continues from, or None for a fresh run; the log says why it resumes.

    A run resumes only when the scheduler requeued it (from its own folder's newest checkpoint) or when asked:
    ``ckpt_path=<file>``, or ``resume=<run folder>`` (that folder's newest checkpoint, last.ckpt or on_exception.ckpt).
    A run folder that holds checkpoints other than the ones resumed is refused, neither resumed unasked nor
    overwritten. With ``resume=``, the recipe must be the run's own: other data, model, optimizer, scheduler or seed
    would not continue it, so such a difference is an error naming the keys.
    """
    log = logging.getLogger(__name__)
    output_dir = Path(cfg.paths.output_dir)
    own = _checkpoints(output_dir)
    if own and (restarts := requeue_count()) > 0:
        log.info("Resuming from %s: SLURM requeued this job (SLURM_RESTART_COUNT=%d)", own[0], restarts)
        return str(own[0])
    if cfg.get("ckpt_path"):
        asked, why = Path(cfg.ckpt_path), "asked by ckpt_path="
    elif cfg.get("resume"):
        asked, why = _resume_checkpoint(cfg, Path(cfg.resume)), f"asked by resume={cfg.resume}"
    else:
        asked, why = None, ""
    if own and (asked is None or asked.resolve().parent != (output_dir / "checkpoints").resolve()):
        raise RunFolderInUse(
            f"{output_dir} already holds the checkpoints of an earlier run ({own[0].relative_to(output_dir)}); "
            f"a run resumes only when asked. To continue that run: resume={output_dir} (keeps writing there with "
            f"hydra.run.dir={output_dir}); to start a new one, use another folder (leave hydra.run.dir out for a new one)."
        )
    if asked is not None:
        log.info("Resuming from %s: %s", asked, why)
    return str(asked) if asked is not None else None


def _resume_checkpoint(cfg: DictConfig, run: Path) -> Path:
    """``resume=<run folder>``: its newest checkpoint, once the recipe is checked against the one it was trained with."""
    candidates = _checkpoints(run)
    if not candidates:
        raise ConfigError(
            f"resume={str(run)!r}: no checkpoints/last.ckpt or checkpoints/on_exception.ckpt in that folder"
        )
    # The recipe is read from the checkpoint itself: the run folder's .hydra/config.yaml has already been rewritten
    # by Hydra when this run continues in that same folder (hydra.run.dir=<it>).
    saved = _checkpoint_recipe(candidates[0])
    differ = [
        f"{key}: run had {OmegaConf.select(saved, key)!r}, now {OmegaConf.select(cfg, key)!r}"
        for key in _leaf_keys(saved, RECIPE_KEYS)
        # where the data lives is not the recipe; the input size follows from data.pad, compared on its own
        if key not in ("data.data_dir", "model.input_size")
        and OmegaConf.select(saved, key) != OmegaConf.select(cfg, key)
    ]
    if differ:
        raise ConfigError(
            f"resume={str(run)!r}: the recipe differs from that run's (pass the run's own overrides):\n  "
            + "\n  ".join(differ)
        )
    return candidates[0]


def _checkpoint_recipe(path: Path) -> DictConfig:
    """The data, model, optimizer, scheduler and seed a checkpoint was trained with (src.train saves them in it)."""
    from src.reliability import safe_load_checkpoint

    checkpoint = safe_load_checkpoint(path)
    data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    return OmegaConf.create({**checkpoint.get("hyper_parameters", {}), "data": data, "seed": data.get("seed")})


def _checkpoints(run: Path) -> list[Path]:
    """A run folder's checkpoints to resume from, newest first."""
    found = [p for p in (run / "checkpoints" / "last.ckpt", run / "checkpoints" / "on_exception.ckpt") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _leaf_keys(cfg: DictConfig, roots: Iterable[str]) -> list[str]:
    keys = []
    for root in roots:
        if OmegaConf.select(cfg, root, default=_MISSING) is _MISSING:  # a key older checkpoints do not have
            continue
        node = OmegaConf.select(cfg, root)
        if isinstance(node, DictConfig):
            keys += [f"{root}.{k}" for k in _leaf_keys(node, node.keys())]
        else:
            keys.append(root)
    return keys
