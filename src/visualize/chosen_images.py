"""The images whose feature maps ``src.visualize`` draws: the first test images of each chosen class, or the user's
own image files, each with a name for its picture."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from src.data.datasets import first_of_each_class


@dataclass
class Chosen:
    """The chosen images as the network reads them, a name for each file and picture, and their true classes."""

    x: Tensor  # (N, 1, S, S), as the network reads them
    names: list[str]  # file stems: <n>_<class>_test<index> or <n>_<file stem>
    sources: list[str]  # "test #<index>" or the file's path
    true: list[int | None]  # None for the user's own images


def slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "-", text).strip("-").lower() or "image"


def choose_test_images(
    test_x: Tensor, test_y: Tensor, class_indices: list[int], per_class: int, classes: list[str]
) -> Chosen:
    picked = first_of_each_class(test_y, class_indices, per_class)
    width = max(2, len(str(len(picked) - 1)))
    names = [f"{n:0{width}d}_{slug(classes[int(test_y[i])])}_test{i}" for n, i in enumerate(picked)]
    return Chosen(test_x[picked], names, [f"test #{i}" for i in picked], [int(test_y[i]) for i in picked])


def choose_inputs(paths: list[Path], prepared: list[Tensor]) -> Chosen:
    width = max(2, len(str(len(paths) - 1)))
    names = [f"{n:0{width}d}_{slug(p.stem)}" for n, p in enumerate(paths)]
    return Chosen(torch.stack(prepared), names, [str(p) for p in paths], [None] * len(paths))
