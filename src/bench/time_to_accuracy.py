"""The benchmark's clock: seconds of training until test accuracy first reaches a target (a stopwatch, read at each
validation; never used to choose a model)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch


class TimeToAccuracy(L.Callback):
    """Times training until test accuracy first reaches ``target``, measured at each validation.

    The clock runs only while training batches run (validation and these test evaluations are excluded). Test
    accuracy here is a stopwatch, never used to pick a model. Logs ``tta/test_acc`` and ``tta/train_s`` at each
    check and ``tta/seconds_to_target`` once the target is reached.
    """

    def __init__(self, target: float = 0.99, stop_at_target: bool = False) -> None:
        self.target, self.stop_at_target = target, stop_at_target
        self.train_seconds, self.seconds_to_target = 0.0, None

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # (Re)starts at an epoch's first batch and after a validation within the epoch (trainer.val_check_interval < 1).
        if getattr(self, "_start", None) is None:
            self._sync(pl_module)
            self._start = time.perf_counter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and getattr(self, "_start", None) is not None:
            self._sync(pl_module)
            self.train_seconds += time.perf_counter() - self._start
            self._start = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        correct = total = 0
        with torch.no_grad():
            for x, y in trainer.datamodule.test_dataloader():
                x, y = x.to(pl_module.device), y.to(pl_module.device)
                correct += (pl_module(x).argmax(1) == y).sum()
                total += len(y)
        acc = float(correct) / total
        values = {"tta/test_acc": acc, "tta/train_s": self.train_seconds}
        if self.seconds_to_target is None and acc >= self.target:
            self.seconds_to_target = self.train_seconds
            if self.stop_at_target:
                trainer.should_stop = True
        if self.seconds_to_target is not None:
            values["tta/seconds_to_target"] = self.seconds_to_target
        pl_module.log_dict(values)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # With validation off for an epoch the clock stops here instead.
        self.on_validation_epoch_start(trainer, pl_module)
