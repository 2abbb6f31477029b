"""Evaluate a checkpoint on the test set: ``python -m src.eval ckpt_path=<checkpoint> [data=fashion_mnist]
[split=train]``.

Prints the test loss and accuracy (computed by the same LightningModule code ``src.train`` tests with, so they
reproduce its ``test/acc``) and per-class accuracy; writes confusion_matrix.png, misclassified.png and
metrics.json into its run folder (outputs/eval/<date>/<time>_<pid>). ``split=train`` (or ``val``) reads the images
the checkpoint trained on (or held out), split as its run split them (its ``data.val_size`` and ``data.split_seed``),
in order and without distortions: the train error that LeCun et al. report beside the test error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import DictConfig

from src.core.entry_point import hydra_entry_point
from src.core.errors import ConfigError
from src.core.plots import confusion_matrix_figure, image_grid, save
from src.core.settings import Rule, choice, integer, required
from src.training.callbacks import WorstMisclassified
from src.training.checkpoints import LoadedCheckpoint, load_checkpoint
from src.training.lit_module import LitLeNet5
from src.training.rules import check_training_config

log = logging.getLogger(__name__)
USAGE = "python -m src.eval ckpt_path=outputs/train/runs/<date>/<time>/checkpoints/last.ckpt"
SPLITS = {"test": "test images", "train": "training images", "val": "validation images"}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    # the data and trainer groups as src.train checks them, and the command's own keys
    rules = [
        integer("max_misclassified", 0),
        choice("split", SPLITS),
        Rule("trainer.limit_test_batches", lambda v: v != 0, "must not be 0: src.eval would read no image"),
    ]
    check_training_config(cfg, rules, required("ckpt_path", USAGE))
    split = cfg.split
    loaded = load_checkpoint(cfg.ckpt_path)
    # The images are padded and normalised as in training, with the checkpoint's own preprocessing; a training or
    # validation split is the one the checkpoint's run made.
    datamodule = instantiate(cfg.data, pad=loaded.preprocessing.pad, **split_as_trained(loaded, cfg, split))
    loaded.check_dataset(datamodule.hparams.dataset)
    datamodule.load_state_dict(loaded.preprocessing.state())
    datamodule.tested_split = split
    module = LitLeNet5(model=loaded.model, optimizer={})
    module.net.load_state_dict(loaded.net.state_dict())

    misclassified = WorstMisclassified(keep=cfg.max_misclassified)
    trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=[misclassified],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]

    # the module's torchmetrics (summed over every process under DDP): rows true, columns predicted
    confusion, class_acc = module.test_confusion_matrix.cpu(), module.test_class_acc.cpu()
    totals, correct = confusion.sum(dim=1), confusion.diag()
    per_class = [
        {"class": name, "correct": int(c), "total": int(t), "acc": float(a)}
        for name, c, t, a in zip(loaded.classes, correct, totals, class_acc)
    ]
    out = Path(cfg.paths.output_dir)
    summary = {
        "ckpt_path": str(loaded.path),
        "dataset": loaded.dataset,
        "epoch": loaded.epoch,
        "split": split,
        f"{split}/acc": float(metrics["test/acc"]),  # the test step's figures, on the split it read
        f"{split}/loss": float(metrics["test/loss"]),
        "correct": int(correct.sum()),
        "total": int(totals.sum()),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    save(confusion_matrix_figure(confusion, loaded.classes, SPLITS[split]), out / "confusion_matrix.png")
    wrong = summary["total"] - summary["correct"]
    save(misclassified_figure(misclassified, loaded, wrong, SPLITS[split]), out / "misclassified.png")

    print(results_table(summary))
    print(f"Wrote metrics.json, confusion_matrix.png and misclassified.png to {out}")
    log.info("%s: acc=%.4f, loss=%.4f for %s", split, summary[f"{split}/acc"], summary[f"{split}/loss"], loaded.path)
    return summary


def split_as_trained(loaded: LoadedCheckpoint, cfg: DictConfig, split: str) -> dict[str, int]:
    """For a training or validation split, the checkpoint's own ``val_size`` and ``split_seed`` (what its run split,
    whatever ``data.`` says here; ``data.``'s for a checkpoint that does not record them); refused, before any work,
    where the checkpoint held no validation split out."""
    if split == "test":
        return {}
    trained = loaded.data_hparams
    val_size = int(trained.get("val_size", cfg.data.val_size))
    split_seed = int(trained.get("split_seed", cfg.data.split_seed))
    if split == "val" and val_size == 0:
        raise ConfigError(
            f"split=val: ckpt_path={str(loaded.path)!r} trained on every training image (data.val_size=0), so it has "
            f"no validation split; choose one of {', '.join(s for s in SPLITS if s != 'val')}"
        )
    return {"val_size": val_size, "split_seed": split_seed}


def misclassified_figure(
    misclassified: WorstMisclassified, loaded: LoadedCheckpoint, wrong: int, images: str = "test images"
) -> Figure:
    """The kept misclassified images as the data set stores them, each with its predicted and true class."""
    result = misclassified.result
    if result is None:  # no test batch ran
        return image_grid(torch.empty(0, 28, 28), [], suptitle=f"Misclassified {images}: none tested")
    titles = [f"pred: {loaded.classes[p]}\ntrue: {loaded.classes[t]}" for p, t in zip(result.predicted, result.true)]
    pixels = loaded.preprocessing.to_pixels(result.images.cpu())
    suptitle = f"Misclassified {images}: the {len(titles)} with the highest loss, of {wrong:,}"
    return image_grid(pixels, titles, suptitle=suptitle)


def results_table(summary: dict[str, Any]) -> str:
    """The printed table: the checkpoint, the split's loss and accuracy, and each class's accuracy."""
    split = summary["split"]
    width = max(len("class"), *(len(r["class"]) for r in summary["per_class"]))
    lines = [
        f"Checkpoint: {summary['ckpt_path']} (trained on {summary['dataset']}, epoch {summary['epoch']})",
        f"{split}/loss = {summary[f'{split}/loss']:.4f}",
        f"{split}/acc  = {summary[f'{split}/acc']:.4f}  ({summary['correct']:,} / {summary['total']:,} {SPLITS[split]})",
        "",
        f"{'class':<{width}}  {'correct':>7}  {'total':>6}  {'accuracy':>8}",
    ]
    lines += [
        f"{r['class']:<{width}}  {r['correct']:>7,}  {r['total']:>6,}  {r['acc']:>8.4f}" for r in summary["per_class"]
    ]
    return "\n".join(lines)


main = hydra_entry_point(evaluate, "eval")


if __name__ == "__main__":
    main()
