"""The report's pictures: curves.png (validation accuracy and training loss per epoch, mean ± std over each
configuration's seeds), gradients.png (diagnosed runs' per-layer gradient norms), val_acc.png (every run) and
test_acc.png (per configuration); the numbers drawn go to curves.json and gradients.json."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from src.core.plots import save
from src.core.runs import GRAD_NORM_TAG
from src.report.tables import accuracies_of, mean_std

CURVES = (("val/acc", "validation accuracy"), ("train/loss", "training loss"))


def curve_bands(groups: dict[str, list[dict[str, Any]]], key: str) -> dict[str, list[dict[str, float]]]:
    """Per configuration, per epoch (1-based): the mean and std over its runs of ``key`` in their history.json, and how
    many runs had it (a run stopped early has fewer epochs)."""
    bands = {}
    for label, group in groups.items():
        per_epoch: dict[int, list[float]] = defaultdict(list)
        for run in group:
            for row in run["history"]:
                if row.get(key) is not None:
                    per_epoch[row["epoch"] + 1].append(row[key])
        bands[label] = [
            {"epoch": epoch, "mean": mean, "std": std, "runs": len(values)}
            for epoch, values in sorted(per_epoch.items())
            for mean, std in [mean_std(values)]
        ]
    return bands


def plot_curves(folder: Path, groups: dict[str, list[dict[str, Any]]]) -> None:
    """curves.png: validation accuracy and training loss against epoch, one colour per configuration, the mean over
    its seeds as a line and a band of ± one std; curves.json holds the numbers drawn."""
    import matplotlib.pyplot as plt

    bands = {key: curve_bands(groups, key) for key, _ in CURVES}
    (folder / "curves.json").write_text(json.dumps(bands, indent=1))
    fig, axes = plt.subplots(1, len(CURVES), figsize=(12, 4.5))
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for ax, (key, name) in zip(axes, CURVES):
        for i, label in enumerate(sorted(groups)):
            points = bands[key][label]
            if not points:
                continue
            epochs = [p["epoch"] for p in points]
            mean = [p["mean"] for p in points]
            low = [p["mean"] - p["std"] for p in points]
            high = [p["mean"] + p["std"] for p in points]
            colour = colours(i % colours.N)
            ax.plot(epochs, mean, color=colour, marker="o", markersize=3, label=f"{label} ({len(groups[label])})")
            ax.fill_between(epochs, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} (mean ± std over seeds)")
        ax.grid(alpha=0.3)
    if len(groups) <= 20:
        axes[0].legend(fontsize=6)
    fig.tight_layout()
    save(fig, folder / "curves.png")


def gradient_norms(run: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """A diagnosed run's gradient L2 norm of each layer's weight per recorded step, read back from its TensorBoard
    events with TensorBoard's own reader: {"conv1": [(step, norm), ...], ...}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run["folder"]), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag[len(GRAD_NORM_TAG) : -len(".weight")]: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag.startswith(GRAD_NORM_TAG) and tag.endswith(".weight")
    }


def gradient_bands(groups: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Per configuration with diagnosed runs, per layer, per recorded step: the mean and std over its runs of the
    layer's weight-gradient norm."""
    bands: dict[str, dict[str, list[dict[str, float]]]] = {}
    for label, group in groups.items():
        per_layer: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for run in group:
            if run.get("diagnosed"):
                for layer, points in gradient_norms(run).items():
                    for step, value in points:
                        per_layer[layer][step].append(value)
        if per_layer:
            bands[label] = {
                layer: [
                    {"step": step, "mean": mean, "std": std, "runs": len(values)}
                    for step, values in sorted(steps.items())
                    for mean, std in [mean_std(values)]
                ]
                for layer, steps in per_layer.items()
            }
    return bands


def plot_gradients(folder: Path, groups: dict[str, list[dict[str, Any]]]) -> bool:
    """gradients.png: for configurations whose runs recorded diagnostics, each layer's weight-gradient norm against
    the step (mean over seeds), one panel per configuration on one log scale: a layer that learns slowly is a low
    line. The numbers drawn go to gradients.json. False (nothing written) when no run was diagnosed."""
    import matplotlib.pyplot as plt

    bands = gradient_bands(groups)
    if not bands:
        return False
    (folder / "gradients.json").write_text(json.dumps(bands, indent=1))
    labels = sorted(bands)
    columns = min(len(labels), 2)
    rows = -(-len(labels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns + 1, 4 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(labels) :]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, labels):
        for layer, points in bands[label].items():
            ax.plot([p["step"] for p in points], [p["mean"] for p in points], label=layer)
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_title(label, fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for row in axes:
        row[0].set_ylabel("weight gradient L2 norm (mean over seeds)")
    fig.tight_layout()
    save(fig, folder / "gradients.png")
    return True


def plot_report(folder: Path, runs: list[dict[str, Any]], groups: dict[str, list[dict[str, Any]]]) -> bool:
    """The report's pictures; True if it drew gradients.png."""
    import matplotlib.pyplot as plt

    plot_curves(folder, groups)
    gradients = plot_gradients(folder, groups)

    fig, ax = plt.subplots(figsize=(9, 5))
    for run in runs:
        points = [(h["epoch"] + 1, h["val/acc"]) for h in run["history"] if "val/acc" in h]
        if points:
            ax.plot(
                *zip(*points),
                marker="o",
                label=f"{run['run']} " + " ".join(f"{k}={v}" for k, v in run["overrides"].items()),
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    if len(runs) <= 16:
        ax.legend(fontsize=6)
    fig.tight_layout()
    save(fig, folder / "val_acc.png")

    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(groups), 2) + 1.5))
    labels = sorted(groups, key=lambda k: statistics.mean(accuracies_of(groups[k])))
    means, stds = zip(*(mean_std(accuracies_of(groups[k])) for k in labels)) if labels else ((), ())
    ax.barh(labels, means, xerr=stds, color="tab:green", capsize=3)
    if means:
        ax.set_xlim(max(0.0, min(means) - 0.05), 1.0)
    ax.set_xlabel("test accuracy (mean ± std over seeds)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    save(fig, folder / "test_acc.png")
    return gradients
