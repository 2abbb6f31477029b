"""The test images the network gets most wrong: kept during testing, for TensorBoard's worst-misclassified grid and
``src.eval``'s misclassified.png."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import Tensor

from src.models.outputs import loss as network_loss


@dataclass(frozen=True)
class Misclassified:
    images: Tensor  # the network's inputs (N, 1, H, W), worst first
    predicted: Tensor
    true: Tensor


class WorstMisclassified(L.Callback):
    """Keeps the ``keep`` misclassified test images with the highest loss, of every DDP process: after testing,
    ``result`` holds them, worst first, with the predicted and the true class (None before any test batch)."""

    def __init__(self, keep: int = 24) -> None:
        self.keep = keep
        self.result: Misclassified | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._wrong: list[tuple[Tensor, ...]] = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        x, y = batch
        logits = outputs["logits"]
        pred = logits.argmax(1)
        loss = network_loss(pl_module.net, logits, y, reduction="none")
        # keep only this batch's worst few (right ones score -1): the images needed at the end stay small
        top = torch.topk(torch.where(pred != y, loss, -1.0), min(self.keep, len(y)))
        self._wrong.append((top.values, x[top.indices], y[top.indices], pred[top.indices]))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Every process keeps its shard's worst ``keep`` (padded to that many, so that all_gather's shapes agree),
        # then all of them are gathered: a collective call, made on every rank.
        self.result = None
        if not self._wrong:  # no test batches (trainer.limit_test_batches=0), on every rank alike
            return
        loss, x, y, pred = (torch.cat(parts) for parts in zip(*self._wrong))
        order = loss.argsort(descending=True)[: self.keep]
        kept = [t[order] for t in (loss, x, y, pred)]
        if (short := self.keep - len(order)) > 0:  # padding rows score -1, as right answers do: never kept
            kept = [torch.cat([t, t.new_full((short, *t.shape[1:]), -1 if i == 0 else 0)]) for i, t in enumerate(kept)]
        gathered = [pl_module.all_gather(t) for t in kept]
        if trainer.world_size > 1:
            gathered = [t.flatten(0, 1) for t in gathered]
        loss, x, y, pred = gathered
        order = loss.argsort(descending=True)[: self.keep]
        order = order[loss[order] >= 0]
        self.result = Misclassified(x[order], pred[order], y[order])
