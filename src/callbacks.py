"""Small callbacks for what Lightning does not log by itself."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightning as L
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
