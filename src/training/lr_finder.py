"""Lightning's learning-rate finder for a run (``lr_find.enabled=true``): a short trial of growing learning rates
before training, its plot and suggestion written into the run folder, optionally applied to the run's optimizer."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.tuner import Tuner

from src.core.plots import save

log = logging.getLogger(__name__)


def find_learning_rate(
    trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule, settings: Any, out_dir: Path
) -> float | None:
    """Run ``Tuner.lr_find`` (it restores the weights and the trainer afterwards); write lr_find.png and lr_find.json;
    with ``settings.apply`` set the suggestion (``steepest_descent``) as the optimizer's lr. Returns the suggestion
    (None if the loss curve gave none)."""
    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=settings.min_lr,
        max_lr=settings.max_lr,
        num_training=settings.num_training,
        update_attr=False,  # the lr lives in the optimizer config (hparams.optimizer.lr), not a module attribute
    )
    lrs, losses = finder.results["lr"], finder.results["loss"]
    lightnings = finder.suggestion()
    suggestion = steepest_descent(lrs, losses)
    applied = bool(settings.apply and suggestion is not None)
    if applied:
        apply_learning_rate(model.hparams, suggestion)
    out_dir.mkdir(parents=True, exist_ok=True)
    save(finder_figure(lrs, losses, suggestion), out_dir / "lr_find.png")
    record = {
        "suggestion": suggestion,
        "applied": applied,
        "lightning_suggestion": lightnings,  # d(loss)/d(lr), not d(loss)/d(log lr): see steepest_descent
        "lr": lrs,
        "loss": losses,
    }
    (out_dir / "lr_find.json").write_text(json.dumps(record, indent=1))
    log.info(
        "lr_find: suggested lr %s (%s); lr_find.png in %s", suggestion, "applied" if applied else "not applied", out_dir
    )
    return suggestion


def steepest_descent(lrs: list[float], losses: list[float], skip_begin: int = 10, skip_end: int = 1) -> float | None:
    """The lr where the smoothed loss falls fastest per decade of lr: the argmin of d(loss)/d(log10 lr), skipping the
    first and last points as Lightning does. Lightning 2.6's own ``suggestion()`` differentiates with respect to lr
    itself, although its trial lrs grow exponentially, which pulls the suggestion towards the smallest lrs tried
    (Lightning issue #21141; the fix, pull request #21171, differentiates w.r.t. log10 lr as here)."""
    kept = list(zip(lrs, losses))[skip_begin : len(lrs) - skip_end]
    points = [(lr, loss) for lr, loss in kept if math.isfinite(loss)]
    if len(points) < 2:
        return None
    log_lrs = torch.log10(torch.tensor([lr for lr, _ in points], dtype=torch.float64))
    gradients = torch.gradient(torch.tensor([loss for _, loss in points], dtype=torch.float64), spacing=[log_lrs])[0]
    return points[int(torch.argmin(gradients))][0]


def apply_learning_rate(hparams: Any, lr: float) -> None:
    """Set the optimizer's lr, and a scheduler's peak (one-cycle's max_lr) that was the optimizer's lr: the config
    writes it as ``${optimizer.lr}``, resolved to a number by the time the module holds it."""
    old = hparams.optimizer["lr"]
    hparams.optimizer["lr"] = lr
    scheduler = hparams.get("scheduler") or {}
    if scheduler.get("max_lr") == old:
        scheduler["max_lr"] = lr


def finder_figure(lrs: list[float], losses: list[float], suggestion: float | None) -> Any:
    """The smoothed training loss against the learning rate (log scale), cut off above twice the starting loss: the
    divergence at the end would otherwise flatten the part worth reading."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    finite = [v for v in losses if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.95, min(max(finite), 2 * finite[0]) * 1.05)
    if suggestion is not None:
        ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested lr {suggestion:.3g}")
        ax.legend()
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title("Lightning's learning-rate finder (Tuner.lr_find)")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
