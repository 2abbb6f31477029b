"""The trust report's pictures: reliability diagrams, accuracy against epsilon, and image grids with predictions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from src.core.plots import image_grid, plt
from src.trust.calibration import Reliability


def reliability_figure(before: Reliability, after: Reliability, titles: Sequence[str]) -> Figure:
    """Accuracy per confidence bin (blue) against its mean confidence (red outline) and the diagonal (perfect
    calibration), before and after temperature scaling; the number above each bin is its count."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, diagram, title in zip(axes, (before, after), titles):
        edges = diagram.edges
        width = edges[1] - edges[0]
        filled = [
            (e, n, a, c) for e, n, a, c in zip(edges[:-1], diagram.counts, diagram.accuracy, diagram.confidence) if n
        ]
        left = [f[0] for f in filled]
        ax.bar(left, [f[2] for f in filled], width=width, align="edge", color="tab:blue", alpha=0.8, label="accuracy")
        ax.bar(
            left,
            [f[3] for f in filled],
            width=width,
            align="edge",
            fill=False,
            edgecolor="tab:red",
            hatch="//",
            linewidth=0.8,
            label="mean confidence",
        )
        for e, n, a, c in filled:
            ax.text(e + width / 2, min(max(a, c) + 0.02, 1.02), f"{n}", ha="center", fontsize=6)
        ax.legend(loc="upper left", fontsize=8)
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1.06), xlabel="confidence (max softmax)", ylabel="accuracy", title=title)
    fig.tight_layout()
    return fig


def accuracy_curve(epsilons: Sequence[float], curves: dict[str, Sequence[float]], title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, accuracy in curves.items():
        ax.plot(epsilons, accuracy, marker="o", label=name)
    ax.set(xlabel="epsilon (L-infinity, pixel units of [0, 1])", ylabel="test accuracy", ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def labelled_rows(
    rows: dict[str, torch.Tensor], predicted: dict[str, torch.Tensor], labels: torch.Tensor, classes: Sequence[str]
) -> Figure:
    """One row of images per entry (e.g. a corruption or an epsilon), each captioned with the row's name and the
    model's prediction, red where it is wrong."""
    images, titles, colors = [], [], []
    short = [c.split(" - ")[0] for c in classes]
    for name, batch in rows.items():
        for i, image in enumerate(batch):
            p, t = int(predicted[name][i]), int(labels[i])
            images.append(image)
            titles.append(f"{name}\npred {short[p]}")
            colors.append("black" if p == t else "red")
    columns = len(next(iter(rows.values())))
    return image_grid(torch.stack(images), titles, columns=columns, title_colors=colors, value_range=(0.0, 1.0))


def attribution_figure(
    images: torch.Tensor, maps: dict[str, torch.Tensor], predicted: torch.Tensor, labels: torch.Tensor, classes
) -> Figure:
    """Per image, a row: the input, then each method's map (red: evidence for the predicted class, blue: against)."""
    columns = 1 + len(maps)
    fig, axes = plt.subplots(len(images), columns, figsize=(1.6 * columns, 1.6 * len(images)), squeeze=False)
    short = [c.split(" - ")[0] for c in classes]
    for i in range(len(images)):
        axes[i, 0].imshow(images[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
        wrong = int(predicted[i]) != int(labels[i])
        axes[i, 0].set_title(
            f"true {short[int(labels[i])]}, pred {short[int(predicted[i])]}", fontsize=7, color="red" if wrong else "k"
        )
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(m[i, 0].cpu(), cmap="bwr", vmin=-1, vmax=1)
            if i == 0:
                axes[i, j].set_title(name.replace("_", " "), fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig
