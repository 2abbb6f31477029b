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

# image_grid's cell, in inches: each image fits a square of _IMAGE_SIDE under a band for its caption (two lines).
_CELL_WIDTH, _CELL_HEIGHT, _IMAGE_SIDE, _SUPTITLE_BAND = 1.5, 1.7, 1.2, 0.35
_CAPTION_POINTS, _SUPTITLE_POINTS = 7, 9


def image_grid(
    images: torch.Tensor | Sequence[Any],
    titles: Sequence[str],
    columns: int = 8,
    title_colors: Sequence[str] | None = None,
    suptitle: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> Figure:
    """Grayscale images (N, H, W) or (N, 1, H, W) in a grid, each with its caption (as d2l shows Fashion-MNIST);
    each image scaled to its own range, or all to ``value_range``. All in one axes, placed by hand: an axes per image,
    laid out by ``tight_layout``, cost a second or more of every run that keeps pictures (docs/speed.md)."""
    images = torch.as_tensor(images if isinstance(images, torch.Tensor) else np.stack(images)).detach().float().cpu()
    if images.dim() == 4:
        images = images[:, 0]
    columns = max(1, min(columns, len(images)))
    rows = max(1, math.ceil(len(images) / columns))
    band = _SUPTITLE_BAND if suptitle else 0.0
    width, height = _CELL_WIDTH * columns, _CELL_HEIGHT * rows + band
    fig = plt.figure(figsize=(width, height))
    if suptitle:  # the figure as wide as the title, at least, with the grid in the middle
        measured = fig.text(0, 0, suptitle, fontsize=_SUPTITLE_POINTS)
        width = max(width, measured.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 0.2)
        measured.remove()
        fig.set_size_inches(width, height)
    margin = (width - _CELL_WIDTH * columns) / 2
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # data units are the figure's inches, y pointing down
    ax.axis("off")
    low, high = value_range or (None, None)
    for i, image in enumerate(images):
        row, column = divmod(i, columns)
        h, w = image.shape
        scale = _IMAGE_SIDE / max(h, w)
        # the image in the middle of its square, the square low in its cell, under the caption's band
        left = margin + column * _CELL_WIDTH + (_CELL_WIDTH - w * scale) / 2
        top = band + row * _CELL_HEIGHT + (_CELL_HEIGHT - _IMAGE_SIDE) * 3 / 4 + (_IMAGE_SIDE - h * scale) / 2
        extent = (left, left + w * scale, top + h * scale, top)
        ax.imshow(image.numpy(), cmap="gray", vmin=low, vmax=high, extent=extent)
        colour = title_colors[i] if title_colors else "black"
        ax.text(
            left + w * scale / 2,
            top - 0.04,
            titles[i],
            fontsize=_CAPTION_POINTS,
            color=colour,
            ha="center",
            va="bottom",
        )
    if len(images) == 0:
        ax.text(width / 2, band + _CELL_HEIGHT / 2, "(none)", ha="center", va="center")
    if suptitle:
        ax.text(width / 2, band / 2, suptitle, fontsize=_SUPTITLE_POINTS, ha="center", va="center")
    ax.set(xlim=(0, width), ylim=(height, 0), aspect="auto")
    return fig


def confusion_matrix_figure(matrix: torch.Tensor, classes: Sequence[str], images: str = "test images") -> Figure:
    """Counts (rows: true class, columns: predicted) of ``images`` (named in the title). Colours are per-row rates,
    so rare classes read as well as common ones; each non-empty cell shows its count."""
    matrix = matrix.detach().cpu()
    k = len(classes)
    rates = matrix.double() / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 1.0 + 0.7 * k))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if count := int(matrix[i, j]):
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix ({int(matrix.sum()):,} {images})")
    fig.tight_layout()
    return fig


def learning_curves(history: list[dict[str, Any]]) -> Figure:
    """Loss and accuracy per epoch, train and validation, like d2l's Animator at the end of training."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] + 1 for h in history]
    for key, ax, label in [
        ("train/loss", ax_loss, "train loss"),
        ("val/loss", ax_loss, "val loss"),
        ("train/acc", ax_acc, "train acc"),
        ("val/acc", ax_acc, "val acc"),
    ]:
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


# Above this many kernels (LeNet1998's C5) one subplot per kernel is slow to draw and the picture too tall to read:
# the layer is drawn as one mosaic image instead, in the same layout and colours.
MOSAIC_ABOVE = 400


def filter_grid(weight: torch.Tensor, title: str, connected: torch.Tensor | None = None) -> Figure:
    """A conv layer's kernels (out, in, kh, kw): one row per filter and one column per input channel (a first layer,
    with one input channel, in rows of up to 8). All kernels share one colour scale, symmetric about zero: white is
    0, red positive, blue negative, so a kernel's sign pattern and its strength read at a glance and compare across
    the layer. ``connected`` (out, in), for a layer whose filters see only some input maps (LeNet1998's C3): the
    kernels it marks False are left blank, not drawn as white (a weight of zero). A layer of more
    than ``MOSAIC_ABOVE`` kernels is one image, ``filter_mosaic``'s."""
    weight = weight.detach().float().cpu()
    out_channels, in_channels, kh, kw = weight.shape
    if out_channels * in_channels > MOSAIC_ABOVE:
        return _filter_mosaic_figure(weight, title, connected)
    if in_channels == 1:
        columns = min(out_channels, 8)
        rows = math.ceil(out_channels / columns)
        kernels = [(i // columns, i % columns, weight[i, 0], f"#{i + 1}") for i in range(out_channels)]
    else:
        rows, columns = out_channels, in_channels
        kernels = [
            (o, i, weight[o, i], "")
            for o in range(out_channels)
            for i in range(in_channels)
            if connected is None or connected[o, i]
        ]
    limit = float(weight.abs().max()) or 1.0
    cell = 0.42 if rows * columns > 48 else 0.8  # inches per kernel: a 16x6 layer fits a page, 6 kernels stay large
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 + cell * columns, 0.9 + cell * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
        ax.set(xlim=(-0.5, kw - 0.5), ylim=(kh - 0.5, -0.5), aspect="equal")  # a blank cell sized as a kernel's
    shown = None
    for row, column, kernel, label in kernels:
        ax = axes[row, column]
        shown = ax.imshow(kernel.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_frame_on(True)
        if label:
            ax.set_title(label, fontsize=7)
    if in_channels > 1:  # which filter (row) and which input channel, i.e. previous layer's map (column)
        for o in range(out_channels):
            axes[o, 0].set_ylabel(f"#{o + 1}", fontsize=6, rotation=0, ha="right", va="center")
        for i in range(in_channels):
            axes[0, i].set_title(f"in {i + 1}", fontsize=6)
    _filter_colorbar(fig, shown, axes.ravel().tolist(), limit)
    fig.suptitle(_filter_title(title, weight, connected), fontsize=9)
    return fig


def _filter_title(title: str, weight: torch.Tensor, connected: torch.Tensor | None) -> str:
    out_channels, in_channels, kh, kw = weight.shape
    kept = "" if connected is None else f"\n{int(connected.sum())} of {out_channels * in_channels} kernels connected"
    return f"{title}: {out_channels} filters of {in_channels}x{kh}x{kw} (white = 0){kept}"


def _filter_colorbar(fig: Figure, shown: Any, axes: Any, limit: float) -> None:
    bar = fig.colorbar(shown, ax=axes, fraction=0.05, pad=0.03, ticks=[-limit, 0.0, limit])
    bar.ax.set_yticklabels([f"{-limit:.2f}", "0", f"{limit:.2f}"], fontsize=7)


def _filter_mosaic_figure(weight: torch.Tensor, title: str, connected: torch.Tensor | None) -> Figure:
    out_channels, in_channels = weight.shape[:2]
    pixels, gap = 10, 2
    image, limit = filter_mosaic(weight, pixels, gap, connected)
    height, width = image.shape[:2]
    fig, ax = plt.subplots(figsize=(2.2 + width / 100, 1.2 + height / 100), layout="constrained")
    ax.imshow(image, interpolation="nearest")
    step = pixels + gap
    centre = gap + pixels / 2 - 0.5  # the first kernel's middle pixel
    rows = [o for o in range(out_channels) if o == 0 or (o + 1) % 10 == 0]  # every tenth filter named
    ax.set_yticks([centre + o * step for o in rows], [f"#{o + 1}" for o in rows], fontsize=6)
    ax.set_xticks([centre + i * step for i in range(in_channels)], [f"{i + 1}" for i in range(in_channels)], fontsize=5)
    ax.set_xlabel("input map", fontsize=7)
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    scale = plt.cm.ScalarMappable(cmap="RdBu_r", norm=matplotlib.colors.Normalize(-limit, limit))
    _filter_colorbar(fig, scale, ax, limit)
    fig.suptitle(_filter_title(title, weight, connected), fontsize=9)
    return fig


def filter_mosaic(
    weight: torch.Tensor, pixels_per_kernel: int = 60, gap: int = 4, connected: torch.Tensor | None = None
) -> tuple[np.ndarray, float]:
    """``filter_grid``'s layout and colours as a plain RGB image (H, W, 3) uint8, without a figure: each kernel enlarged
    to about ``pixels_per_kernel`` pixels, kernels apart by grey gaps (white is 0; a kernel that ``connected`` marks
    False is left grey like the gaps). Far cheaper than a matplotlib figure, so it can be logged every epoch (its cost:
    docs/visualize.md). Also returns the scale's limit (the largest absolute weight, drawn full red or blue), which a
    picture without a colour bar cannot show."""
    weight = weight.detach().float().cpu()
    out_channels, in_channels, kh, kw = weight.shape
    if in_channels == 1:
        columns = min(out_channels, 8)
        rows = math.ceil(out_channels / columns)
        cells = [(i // columns, i % columns, weight[i, 0]) for i in range(out_channels)]
    else:
        rows, columns = out_channels, in_channels
        cells = [
            (o, i, weight[o, i])
            for o in range(out_channels)
            for i in range(in_channels)
            if connected is None or connected[o, i]
        ]
    limit = float(weight.abs().max()) or 1.0
    scale = max(1, pixels_per_kernel // max(kh, kw))
    height, width = kh * scale, kw * scale
    canvas = np.full((gap + rows * (height + gap), gap + columns * (width + gap), 3), 160, dtype=np.uint8)
    colours = matplotlib.colormaps["RdBu_r"]
    for row, column, kernel in cells:
        rgb = colours((kernel.numpy() / limit + 1) / 2, bytes=True)[..., :3]  # -limit..limit -> 0..1: 0 is white
        top, left = gap + row * (height + gap), gap + column * (width + gap)
        canvas[top : top + height, left : left + width] = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    return canvas, limit


def feature_maps_figure(
    image: torch.Tensor,
    image_title: str,
    stages: Sequence[tuple[str, torch.Tensor]],
    scales: Sequence[tuple[float, float]],
) -> Figure:
    """One image as the network sees it (H, W), then its feature maps after each stage (name, maps (C, H, W)), top to
    bottom in the network's order, each stage titled with its name and shape (``6@28x28``). ``scales`` gives each
    stage's colour range, meant to be shared by every image shown, so two images' maps compare by brightness: grey
    from 0 (black) for maps that are never negative (ReLU, sigmoid), blue-white-red about 0 otherwise (tanh)."""
    columns = 8
    stage_rows = [math.ceil(len(maps) / columns) for _, maps in stages]
    heights = [1.9] + [0.35 + 0.95 * r for r in stage_rows]
    fig = plt.figure(figsize=(1.0 + 0.95 * columns, sum(heights)))
    parts = fig.subfigures(len(heights), 1, height_ratios=heights)
    ax = parts[0].subplots()
    ax.imshow(torch.as_tensor(image).detach().float().cpu().numpy(), cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"input {image.shape[-2]}x{image.shape[-1]}: {image_title}", fontsize=9)
    for part, (name, maps), rows, (low, high) in zip(parts[1:], stages, stage_rows, scales):
        maps = maps.detach().float().cpu()
        signed = low < 0
        limit = max(abs(low), abs(high)) or 1.0
        vmin, vmax, cmap = (-limit, limit, "RdBu_r") if signed else (0.0, high or 1.0, "gray")
        axes = part.subplots(rows, columns, squeeze=False)
        shown = None
        for i, ax in enumerate(axes.flat):
            ax.set_xticks([])
            ax.set_yticks([])
            if i < len(maps):
                shown = ax.imshow(maps[i].numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
                ax.set_title(f"#{i + 1}", fontsize=6, pad=2)
            else:
                ax.set_frame_on(False)
        part.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02).ax.tick_params(labelsize=6)
        channels, height, width = maps.shape
        silent = int((maps.flatten(1).abs().amax(dim=1) == 0).sum())  # e.g. ReLU units this image never turns on
        part.suptitle(f"{name}: {channels}@{height}x{width}" + (f"  ({silent} all zero)" if silent else ""), fontsize=9)
    return fig
