"""What ``src.visualize`` measures of the chosen images' activations: each image's mean activation after every stage,
and, for test images of two or more classes, how alike the classes' activations are, stage by stage."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from src.visualize.chosen_images import Chosen


def mean_activations(outputs: list[tuple[str, Tensor]]) -> dict[str, list[float]]:
    """Per stage, each image's mean activation: how strongly an input (a test image, noise, a picture of something
    else) drives each layer."""
    return {name: out.flatten(1).mean(dim=1).tolist() for name, out in outputs}


def class_similarity(chosen: Chosen, outputs: list[tuple[str, Tensor]], classes: list[str]) -> list[dict[str, Any]]:
    """For test images of two or more classes: per stage and pair of classes, the Pearson correlation of the two
    classes' mean activation (over their chosen images, every unit of the stage). Near 1: the stage responds to both
    alike (it does not tell them apart yet); lower: it does."""
    shown = sorted({t for t in chosen.true if t is not None})
    if len(shown) < 2:
        return []
    true = torch.tensor([-1 if t is None else t for t in chosen.true])
    rows = []
    for stage, out in outputs:
        mean = {c: out[true == c].flatten(1).mean(dim=0) for c in shown}
        for i, a in enumerate(shown):
            for b in shown[i + 1 :]:
                correlation = torch.corrcoef(torch.stack([mean[a], mean[b]]))[0, 1]
                rows.append(
                    {"stage": stage, "class_a": classes[a], "class_b": classes[b], "correlation": float(correlation)}
                )
    return rows
