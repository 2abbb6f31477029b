"""Callbacks that keep a run's work safe: RNG state in checkpoints, divergence checks, a checkpoint on a clean stop."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.core.errors import TrainingDiverged
from src.training.resume import continue_command

log = logging.getLogger(__name__)


class RNGStateCheckpoint(L.Callback):
    """Saves and restores the Python, NumPy and torch (CPU and CUDA) random generators with each checkpoint.

    Lightning does not store them. The data order needs no state of its own: each epoch's permutation is a pure
    function of (data.seed, epoch), and Lightning restores the epoch. Stored as tensors and plain lists so the
    checkpoint still loads with ``weights_only=True``.
    """

    def state_dict(self) -> dict[str, Any]:
        version, py_state, gauss = random.getstate()
        _, keys, pos, has_gauss, cached = np.random.get_state()
        return {
            "python": [version, list(py_state), gauss],
            "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, py_state, gauss = state["python"]
        random.setstate((version, tuple(py_state), gauss))
        keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class DivergenceGuard(L.Callback):
    """Stops training at the first NaN or infinite training loss, naming the step, before a checkpoint can hold it.

    The check stays on the device (no per-step host sync) and is read every ``check_every_n_steps`` steps (on a
    CPU reading is free, so every step) and always before validation and the epoch's checkpoints.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        step = trainer.global_step  # already counts this batch's optimizer step
        bad = ~torch.isfinite(loss.detach())
        self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)
        every = self.check_every_n_steps or (1 if loss.device.type == "cpu" else 50)
        if step % every == 0:
            self._check(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, pl_module)

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._first_bad is None or (step := int(self._first_bad)) < 0:
            return
        lr = pl_module.hparams.get("optimizer", {}).get("lr")
        last = Path(trainer.checkpoint_callback.dirpath or "", "last.ckpt") if trainer.checkpoint_callback else None
        kept = (
            f"The last good checkpoint is kept: {last}."
            if last and last.is_file()
            else "No checkpoint had been written yet."
        )
        raise TrainingDiverged(
            f"Training diverged: train/loss became NaN or infinite at step {step} (epoch {trainer.current_epoch}). "
            f"{kept} Try a lower learning rate (optimizer.lr={lr} now), gradient clipping "
            f"(trainer.gradient_clip_val=1.0), or a warm-up schedule (scheduler=onecycle)."
        )


class ResumableStopCheckpoint(L.Callback):
    """On Ctrl-C or SIGTERM (a cluster's preemption) during training, saves ``on_exception.ckpt`` and says how to resume.

    Errors are not saved here: a diverged run's weights are NaN, and a bug's state is not worth resuming; the
    epoch-end checkpoints (last.ckpt, best) stay as they were. Not a subclass of Lightning's OnExceptionCheckpoint:
    with one of those among the callbacks, Lightning turns ``fit(ckpt_path=None)`` into ``"last"`` and resumes
    whatever its folder holds, unasked. Resuming is src.training.resume.resolve_resume's decision alone.
    """

    def __init__(self, dirpath: str | Path, filename: str = "on_exception") -> None:
        self.ckpt_path = str(Path(dirpath) / f"{filename}.ckpt")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or not trainer.training:
            return
        trainer.save_checkpoint(self.ckpt_path)
        if trainer.is_global_zero:
            reason = "SIGTERM" if isinstance(exception, SIGTERMException) else "Ctrl-C"
            # A SLURM job requeued after this stop resumes from the checkpoint by itself (src.training.resume.resolve_resume).
            requeued = " (a requeued SLURM job resumes from it by itself)" if "SLURM_JOB_ID" in os.environ else ""
            log.error(
                "Stopped by %s. A checkpoint to resume from was saved to %s%s\nResume with:\n  %s",
                reason,
                self.ckpt_path,
                requeued,
                continue_command(ckpt_path=self.ckpt_path),
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The run finished: a mid-epoch stop checkpoint from before is stale (as OnExceptionCheckpoint's teardown does).
        if trainer.is_global_zero:
            Path(self.ckpt_path).unlink(missing_ok=True)
