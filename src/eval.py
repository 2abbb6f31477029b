"""Evaluate a checkpoint on the test set: ``python -m src.eval ckpt_path=<checkpoint> [data=fashion_mnist]``.

Prints the test loss and accuracy (computed by the same LightningModule code ``src.train`` tests with, so they
reproduce its ``test/acc``) and per-class accuracy; writes confusion_matrix.png, misclassified.png and
metrics.json into its run folder (outputs/eval/<date>/<time>_<pid>).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from src.checks import require
from src.config import CONFIG_DIR
from src.errors import run_entry_point
from src.inference import DataStats, check_same_data, load_checkpoint
from src.plots import confusion_matrix_figure, image_grid, save
from src.validation import validate

log = logging.getLogger(__name__)


class CollectMisclassified(L.Callback):
    """Keeps each test batch's misclassified images with their predicted and true labels, for misclassified.png."""

    def __init__(self) -> None:
        self.images: list[Tensor] = []
        self.preds: list[Tensor] = []
        self.targets: list[Tensor] = []

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
        pred = outputs["logits"].argmax(dim=1)
        wrong = pred != y
        self.images.append(x[wrong].cpu())
        self.preds.append(pred[wrong].cpu())
        self.targets.append(y[wrong].cpu())

    def results(self) -> tuple[Tensor, Tensor, Tensor]:
        return torch.cat(self.images), torch.cat(self.preds), torch.cat(self.targets)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    ckpt_path = require(
        cfg, "ckpt_path", "python -m src.eval ckpt_path=outputs/train/runs/<date>/<time>/checkpoints/last.ckpt"
    )
    loaded = load_checkpoint(ckpt_path)
    # The test images are padded and normalised as in training, with the checkpoint's own statistics.
    datamodule = instantiate(cfg.data, pad=loaded.data.pad)
    check_same_data(loaded, datamodule.hparams.dataset, datamodule.classes)
    datamodule.load_state_dict(loaded.data.as_dict())

    collector = CollectMisclassified()
    trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=[collector],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    metrics = trainer.test(loaded.module, datamodule=datamodule, verbose=False)[0]
    wrong, wrong_pred, wrong_true = collector.results()

    classes = loaded.data.classes
    # the module's torchmetrics (summed over every process under DDP): rows true, columns predicted
    confusion, class_acc = loaded.module.test_confusion_matrix.cpu(), loaded.module.test_class_acc.cpu()
    totals, correct = confusion.sum(dim=1), confusion.diag()
    per_class = [
        {"class": name, "correct": int(c), "total": int(t), "acc": float(a)}
        for name, c, t, a in zip(classes, correct, totals, class_acc)
    ]
    out = Path(cfg.paths.output_dir)
    summary = {
        "ckpt_path": str(loaded.path),
        "dataset": loaded.data.dataset,
        "epoch": loaded.epoch,
        "test/acc": float(metrics["test/acc"]),
        "test/loss": float(metrics["test/loss"]),
        "correct": int(correct.sum()),
        "total": int(totals.sum()),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    save(confusion_matrix_figure(confusion, classes), out / "confusion_matrix.png")
    plot_misclassified(wrong, wrong_pred, wrong_true, loaded.data, out / "misclassified.png", cfg.max_misclassified)

    print(format_report(summary, classes))
    print(f"Wrote metrics.json, confusion_matrix.png and misclassified.png to {out}")
    log.info("test/acc=%.4f, test/loss=%.4f for %s", summary["test/acc"], summary["test/loss"], loaded.path)
    return summary


def format_report(summary: dict[str, Any], classes: list[str]) -> str:
    width = max(len("class"), *(len(c) for c in classes))
    lines = [
        f"Checkpoint: {summary['ckpt_path']} (trained on {summary['dataset']}, epoch {summary['epoch']})",
        f"test/loss = {summary['test/loss']:.4f}",
        f"test/acc  = {summary['test/acc']:.4f}  ({summary['correct']:,} / {summary['total']:,} test images)",
        "",
        f"{'class':<{width}}  {'correct':>7}  {'total':>6}  {'accuracy':>8}",
    ]
    lines += [
        f"{r['class']:<{width}}  {r['correct']:>7,}  {r['total']:>6,}  {r['acc']:>8.4f}" for r in summary["per_class"]
    ]
    return "\n".join(lines)


def plot_misclassified(images: Tensor, preds: Tensor, targets: Tensor, data: DataStats, path: Path, limit: int) -> None:
    n = min(len(images), max(int(limit), 0))
    p = data.pad
    pixels = (images[:n, 0] * data.std + data.mean)[:, p : images.shape[-2] - p, p : images.shape[-1] - p]  # as stored
    titles = [f"pred: {data.classes[preds[i]]}\ntrue: {data.classes[targets[i]]}" for i in range(n)]
    save(image_grid(pixels, titles, suptitle=f"Misclassified test images (first {n} of {len(images):,})"), path)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    run_entry_point(evaluate, cfg)


if __name__ == "__main__":
    main()
