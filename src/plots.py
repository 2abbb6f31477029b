"""Matplotlib figures shared by the TensorBoard callbacks, the run's own PNGs and the sweep report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def image_grid(
    images: torch.Tensor | Sequence[Any],
    titles: Sequence[str],
    columns: int = 8,
    title_colors: Sequence[str] | None = None,
    suptitle: str | None = None,
) -> Figure:
    """Grayscale images (N, H, W) or (N, 1, H, W) in a grid, each with its caption (as d2l shows Fashion-MNIST)."""
    images = torch.as_tensor(images if isinstance(images, torch.Tensor) else np.stack(images)).detach().float().cpu()
    if images.dim() == 4:
        images = images[:, 0]
    columns = max(1, min(columns, len(images)))
    rows = max(1, math.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.7 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray")
            ax.set_title(titles[i], fontsize=7, color=(title_colors[i] if title_colors else "black"))
    if len(images) == 0:
        axes.flat[0].text(0.5, 0.5, "(none)", ha="center", va="center")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(matrix: torch.Tensor, classes: Sequence[str]) -> Figure:
    """Counts (rows: true class, columns: predicted). Colours are per-row rates, so rare classes read as well as
    common ones; each non-empty cell shows its count."""
    matrix = matrix.detach().cpu()
    k = len(classes)
    rates = matrix.double() / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 1.0 + 0.7 * k))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if count := int(matrix[i, j]):
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix ({int(matrix.sum()):,} test images)")
    fig.tight_layout()
    return fig


def learning_curves(history: list[dict[str, Any]]) -> Figure:
    """Loss and accuracy per epoch, train and validation, like d2l's Animator at the end of training."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] + 1 for h in history]
    for key, ax, label in [("train/loss", ax_loss, "train loss"), ("val/loss", ax_loss, "val loss"),
                           ("train/acc", ax_acc, "train acc"), ("val/acc", ax_acc, "val acc")]:  # fmt: skip
        points = [(e, h[key]) for e, h in zip(epochs, history) if h.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Any) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)
