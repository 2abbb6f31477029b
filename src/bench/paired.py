"""Lightning's cost per training step, paired with a plain loop in the same process, at three levels."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from src.bench.plain import plain_setup, plain_step
from src.core.config import compose_config
from src.training.cpu import configure_runtime

PAIRED_LEVELS = {
    "minimal": "an empty LightningModule (forward + loss) in a bare Trainer: Lightning's own loop",
    "module": "src's LitLeNet5 (metrics, logging) in a bare Trainer",
    "pipeline": "src.train's Trainer as users run it (logger, progress bar, all its callbacks)",
}


class PlainStepsBetween(L.Callback):
    """After every ``segment`` Lightning training steps, times them, then runs and times ``segment`` plain-loop steps.

    The plain loop has its own network, optimizer and data, built from the same config. Both kinds of segment run
    seconds apart in one process, so a slow spell of a shared machine falls on both alike and cancels out of each
    segment's ratio. A segment never spans an epoch's end or a validation (one that validation interrupts is
    dropped), so validation and the epoch-end work (metrics, checkpoints) are not counted.
    """

    def __init__(self, cfg: Any, device: torch.device, segment: int) -> None:
        self.device, self.segment = device, segment
        self.net, self.opt, dm = plain_setup(cfg, device)
        self.loader, self.batches = dm.train_dataloader(), iter(())
        self.lightning_ms: list[list[float]] = []  # per epoch, per segment: ms per step
        self.plain_ms: list[list[float]] = []

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lightning_ms.append([])
        self.plain_ms.append([])
        self._steps, self._start = 0, None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._steps, self._start = 0, None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
        if self._start is None:
            self._start = self._now()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, out: Any, batch: Any, i: int
    ) -> None:
        self._steps += 1
        if self._steps % self.segment:
            return
        start = self._now()
        self.lightning_ms[-1].append((start - self._start) / self.segment * 1e3)
        for _ in range(self.segment):
            plain_step(self.net, self.opt, *self._next_batch())
        self._start = self._now()
        self.plain_ms[-1].append((self._start - start) / self.segment * 1e3)


class MinimalLitLeNet5(L.LightningModule):
    """The least a LightningModule can be: the same network, loss and optimizer, nothing logged or measured."""

    def __init__(self, cfg: Any) -> None:
        from hydra.utils import instantiate

        super().__init__()
        self.net = instantiate(cfg.model)
        self.optimizer_fn = instantiate(cfg.optimizer)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_fn(self.parameters())


def run_paired(
    level: str, accelerator: str, limit: int | None, segment: int, overrides: list[str], output_dir: Path
) -> dict:
    """Fit at one ``PAIRED_LEVELS`` level with plain-loop segments in between; per-segment ms/step of each.
    Epochs, data, model and optimizer all come from the composed config, at every level."""
    from hydra.utils import instantiate

    from src.training.build import build
    from src.training.lit_module import LitLeNet5

    limits = [f"trainer.limit_{stage}_batches={limit}" for stage in ("train", "val")] if limit is not None else []
    cfg = compose_config(*overrides, *limits, f"paths.output_dir={output_dir}", f"trainer.accelerator={accelerator}")
    configure_runtime(cfg)
    L.seed_everything(cfg.seed)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    steps = PlainStepsBetween(cfg, device, segment)
    if level == "pipeline":
        datamodule, model, trainer = build(cfg)
        trainer.callbacks.append(steps)
    else:
        datamodule = instantiate(cfg.data)
        model = MinimalLitLeNet5(cfg) if level == "minimal" else LitLeNet5.from_config(cfg)
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=1,
            max_epochs=cfg.trainer.max_epochs,
            limit_train_batches=limit,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[steps],
        )
    trainer.fit(model, datamodule=datamodule)
    return {"lightning_ms": steps.lightning_ms, "plain_ms": steps.plain_ms}


def paired_summary(result: dict) -> dict:
    """Segments after the first epoch (warm-up) unless there was only one: mean ms per step of each loop, their
    ratio (total Lightning time over total raw-loop time, so work done only every few segments, like logging,
    counts in full) and the quartiles of the segments' own ratios (the spread)."""
    first = 1 if len(result["lightning_ms"]) > 1 else 0
    lightning = [ms for epoch in result["lightning_ms"][first:] for ms in epoch]
    plain_ = [ms for epoch in result["plain_ms"][first:] for ms in epoch]
    if not lightning:
        return {"segments": 0}
    ratios = [a / b for a, b in zip(lightning, plain_)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "segments": len(ratios),
        "lightning_ms": statistics.fmean(lightning),
        "plain_ms": statistics.fmean(plain_),
        "ratio": sum(lightning) / sum(plain_),
        "ratio_q1": quartiles[0],
        "ratio_q3": quartiles[2],
    }
