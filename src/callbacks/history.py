"""Callbacks that record how training went: each epoch's metrics (history.json, learning_curves.png) and its speed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only


class EpochThroughput(L.Callback):
    """Logs ``time/epoch_s`` and ``time/images_per_s`` for each training epoch."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run resumed mid-epoch skips that epoch's on_train_epoch_start: time it from here.
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._images = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += len(batch[1])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        pl_module.log_dict({"time/epoch_s": seconds, "time/images_per_s": self._images / max(seconds, 1e-9)})


class LearningCurves(L.Callback):
    """Keeps each epoch's metrics; at the end writes ``history.json`` and ``learning_curves.png`` to the run folder."""

    KEYS = {"train/loss": "train/loss_epoch", "train/acc": "train/acc", "val/loss": "val/loss", "val/acc": "val/acc"}

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self.history: list[dict[str, Any]] = []
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Callbacks' epoch-end hooks run before the LightningModule's, which computes train/acc: the row is
        # completed at the next epoch's start (or the end of training), when every metric of the epoch is in.
        self._pending = {"epoch": trainer.current_epoch, "step": trainer.global_step}

    def _flush(self, trainer: L.Trainer) -> None:
        row, self._pending = getattr(self, "_pending", None), None
        if row is not None:
            metrics = trainer.callback_metrics
            row.update({name: float(metrics[key]) for name, key in self.KEYS.items() if key in metrics})
            self.history.append(row)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    def state_dict(self) -> dict[str, Any]:
        # A resumed run keeps the curves of the epochs before the stop, the epoch being saved included.
        history, trainer, row = list(self.history), self._trainer, getattr(self, "_pending", None)
        if trainer is None:
            return {"history": history}
        metrics = trainer.callback_metrics
        if row is not None:  # saved at the train epoch's end (no validation this epoch): every metric is logged
            history.append({**row, **{n: float(metrics[k]) for n, k in self.KEYS.items() if k in metrics}})
        elif trainer.validating and (not history or history[-1]["epoch"] < trainer.current_epoch):
            # Saved at the end of validation, before the module logs the epoch's train metrics (the ones logged are
            # the previous epoch's): those come from the module's running metrics.
            running = getattr(trainer.lightning_module, "running_epoch_metrics", None)
            values = {n: float(metrics[k]) for n, k in self.KEYS.items() if k.startswith("val/") and k in metrics}
            row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
            history.append({**row, **(running("train") if running else {}), **values})
        return {"history": history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.history:
            return
        from src.plots import learning_curves, save

        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "history.json").write_text(json.dumps(self.history, indent=1))
        save(learning_curves(self.history), self.output_dir / "learning_curves.png")
