"""Small callbacks for what Lightning does not log by itself."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.logger import _flatten_dict
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard.summary import hparams as hparams_summary


class HParamsSession(L.Callback):
    """Registers the run in TensorBoard's HPARAMS tab with the metrics that matter.

    Lightning's own hparams logging only links ``hp_metric``. Here the session is declared with the real
    metric tags (``val/acc_best``, ``test/acc``, ...); TensorBoard then reads their values from the scalars the
    run logs anyway, so no placeholder values are written.
    """

    def __init__(self, metrics: Sequence[str], extra: dict[str, Any] | None = None) -> None:
        self.metrics = list(metrics)
        self.extra = dict(extra or {})

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params: dict[str, Any] = dict(pl_module.hparams)
        if trainer.datamodule is not None:
            params["data"] = dict(trainer.datamodule.hparams)
        params.update(self.extra)
        flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in _flatten_dict(params).items()}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment._get_file_writer()
                for summary in hparams_summary(flat, {m: 0.0 for m in self.metrics}):
                    writer.add_summary(summary)


class EpochThroughput(L.Callback):
    """Logs ``time/epoch_s`` and ``time/images_per_s`` for each training epoch."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._images += len(batch[1])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        pl_module.log_dict({"time/epoch_s": seconds, "time/images_per_s": self._images / max(seconds, 1e-9)})


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

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
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
