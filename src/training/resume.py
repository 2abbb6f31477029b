"""The resume policy: which checkpoint a run continues from, if any, and the checks before it does.

A run resumes only when the scheduler requeued it (from its own folder's newest checkpoint) or when asked:
``ckpt_path=<file>``, or ``resume=<run folder>`` (that folder's newest checkpoint).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.core.errors import ConfigError, DiskFull, RunFolderInUse
from src.core.storage import disk_full_cause, disk_full_message
from src.training.checkpoints import safe_load_checkpoint
from src.training.slurm import requeue_count

log = logging.getLogger(__name__)
RECIPE_KEYS = ("data", "model", "optimizer", "scheduler", "seed", "label_smoothing")
_MISSING = object()


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from, read and checked once."""

    path: Path
    global_step: int  # the training step it continues at; the first run's TensorBoard events from here on are replaced
    in_own_folder: bool  # the run continues in the folder that holds it (requeued, or resume= with hydra.run.dir=)


def resolve_resume(cfg: DictConfig) -> ResumePoint | None:
    """The checkpoint this run continues from, or None for a fresh run; the log says why it resumes.

    A run resumes only when the scheduler requeued it (from its own folder's newest checkpoint) or when asked:
    ``ckpt_path=<file>``, or ``resume=<run folder>`` (that folder's newest checkpoint, last.ckpt or on_exception.ckpt).
    A run folder that holds checkpoints other than the ones resumed is refused, neither resumed unasked nor
    overwritten. With ``resume=``, the recipe must be the run's own: other data, model, optimizer, scheduler or seed
    would not continue it, so such a difference is an error naming the keys. The checkpoint is loaded here, once,
    with ``weights_only=True``: an unsafe or broken file is refused before any work.
    """
    output_dir = Path(cfg.paths.output_dir)
    own = _checkpoints(output_dir)
    same_recipe = False  # resume= must continue the run's own recipe
    if own and (restarts := requeue_count()) > 0:
        asked, why = own[0], f"SLURM requeued this job (SLURM_RESTART_COUNT={restarts})"
    elif cfg.get("ckpt_path"):
        asked, why = Path(cfg.ckpt_path), "asked by ckpt_path="
    elif cfg.get("resume"):
        run = Path(cfg.resume)
        if not (found := _checkpoints(run)):
            raise ConfigError(
                f"resume={str(run)!r}: no checkpoints/last.ckpt or checkpoints/on_exception.ckpt in that folder"
            )
        asked, why, same_recipe = found[0], f"asked by resume={cfg.resume}", True
    else:
        asked, why = None, ""
    in_own_folder = asked is not None and asked.resolve().parent == (output_dir / "checkpoints").resolve()
    if own and not in_own_folder:
        raise RunFolderInUse(
            f"{output_dir} already holds the checkpoints of an earlier run ({own[0].relative_to(output_dir)}); "
            f"a run resumes only when asked. To continue that run: resume={output_dir} (keeps writing there with "
            f"hydra.run.dir={output_dir}); to start a new one, use another folder (leave hydra.run.dir out for a new one)."
        )
    if asked is None:
        return None
    checkpoint = safe_load_checkpoint(asked)
    if same_recipe:
        _check_same_recipe(cfg, checkpoint)
    log.info("Resuming from %s: %s", asked, why)
    return ResumePoint(asked, int(checkpoint.get("global_step", 0)), in_own_folder)


def command_line_overrides() -> list[str]:
    """The run's overrides as typed: Hydra's record of them (a sweep job under submitit has the launcher's argv)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return sys.argv[1:]


def continue_command(**resume_from: str) -> str:
    """``python -m src.train`` with the run's own overrides and ``resume=`` or ``ckpt_path=`` in place of theirs."""
    overrides = [a for a in command_line_overrides() if not a.startswith(("ckpt_path=", "resume=", "-"))]
    return " ".join(["python -m src.train", *overrides, *(f"{k}={v}" for k, v in resume_from.items())])


@contextmanager
def kept_on_full_disk(run: Path) -> Iterator[None]:
    """A full disk while training (a checkpoint, TensorBoard's events, a record) becomes ``DiskFull``: one message
    with the folder, its free space, the checkpoint kept and the command that continues once space is freed."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if (cause := disk_full_cause(exc)) is None:
            raise
        kept = "No checkpoint had been written yet: free some space and start the run again."
        if found := _checkpoints(run):
            epoch = safe_load_checkpoint(found[0]).get("epoch")
            kept = (
                f"Kept: {found[0]} (saved after epoch {epoch}; whole, the failed write left the file before it as it "
                f"was). Free some space, then continue with:\n  {continue_command(resume=str(run))}"
            )
        raise DiskFull(f"{disk_full_message(cause, run)} {kept}") from exc


def _check_same_recipe(cfg: DictConfig, checkpoint: dict[str, Any]) -> None:
    """``resume=``: the recipe must be the checkpoint's own. It is read from the checkpoint itself: the run folder's
    .hydra/config.yaml has already been rewritten by Hydra when this run continues in that same folder."""
    data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    saved = OmegaConf.create({**checkpoint.get("hyper_parameters", {}), "data": data, "seed": data.get("seed")})
    differ = [
        f"{key}: run had {OmegaConf.select(saved, key)!r}, now {OmegaConf.select(cfg, key)!r}"
        for key in _leaf_keys(saved, RECIPE_KEYS)
        # where the data lives is not the recipe; the input size follows from data.pad, compared on its own
        if key not in ("data.data_dir", "model.input_size")
        and OmegaConf.select(saved, key) != OmegaConf.select(cfg, key)
    ]
    if differ:
        raise ConfigError(
            f"resume={str(cfg.resume)!r}: the recipe differs from that run's (pass the run's own overrides):\n  "
            + "\n  ".join(differ)
        )


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
