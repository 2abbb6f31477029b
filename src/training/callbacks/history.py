"""Callbacks that record how training went: each epoch's metrics (history.json, learning_curves.png) and its speed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from src.core.storage import replace_text


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
    """At the end of training, writes the module's ``history`` (each epoch's loss and accuracy, train and validation)
    as ``history.json`` and ``learning_curves.png`` into the run folder."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        history = getattr(pl_module, "history", [])
        if not history:
            return
        from src.core.plots import learning_curves, save

        self.output_dir.mkdir(parents=True, exist_ok=True)
        replace_text(self.output_dir / "history.json", json.dumps(history, indent=1))
        save(learning_curves(history), self.output_dir / "learning_curves.png")
