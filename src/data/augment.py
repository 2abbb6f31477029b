"""Training-set augmentation as whole-batch tensor ops on the batch's own device, and its torchvision twin.

One ``BatchAugment`` serves both pipelines: the tensor pipeline calls it on each training batch (no PIL, no
per-sample Python), the classic pipeline gets the same random ranges as torchvision transforms v2
(``classic_transforms``). Every parameter is drawn per image:

- ``translate``: a shift of up to that many whole pixels in each direction, the uncovered border black (for the
  tensor pipeline: a crop from the image padded by that much, as ``RandomCrop(padding=...)`` does);
- ``degrees`` and ``scale``: a rotation in [-degrees, degrees] and a zoom in [scale[0], scale[1]] about the centre,
  bilinear (with them, the shift is part of the same affine map, as in ``RandomAffine``);
- ``squeeze`` and ``shear``: LeCun et al.'s (1998) other two distortions, tensor pipeline only: a squeeze by a ratio
  in [squeeze[0], squeeze[1]] (the width times it, the height divided by it) and a horizontal shear x += k y, k in
  [-shear, shear];
- ``flip``: the probability of a left-right mirror (garments, never digits: a mirrored 2 is not a 2).

The draws for a batch come from a generator seeded by (seed, epoch, rank, batch index): the same seed gives the
same augmented batches, a resumed run continues the same stream, and every epoch differs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from src.core.settings import Rule, check, integer, is_number

AUGMENT_RULES = [  # the `augment` group's values, checked by src.train before any work
    integer("augment.translate", 0, 8, note="pixels"),
    Rule("augment.degrees", lambda v: is_number(v) and 0 <= v <= 180, "must be a number in [0, 180]"),
    Rule(
        "augment.scale",
        lambda v: len(v) == 2 and all(is_number(z) and z > 0 for z in v) and v[0] <= v[1],
        "must be two numbers > 0, the smaller first, e.g. [0.9, 1.1]",
    ),
    Rule("augment.flip", lambda v: is_number(v) and 0 <= v <= 1, "must be a probability in [0, 1]"),
    Rule(
        "augment.squeeze",
        lambda v: len(v) == 2 and all(is_number(z) and z > 0 for z in v) and v[0] <= v[1],
        "must be two numbers > 0, the smaller first, e.g. [0.9, 1.1] ([1, 1]: none)",
    ),
    Rule("augment.shear", lambda v: is_number(v) and 0 <= v <= 1, "must be a number in [0, 1] (0: none)"),
]


def classic_distortions(cfg: DictConfig) -> list[str]:
    """torchvision's RandomAffine has no squeeze: the classic pipeline cannot draw the paper's distortions."""
    squeeze = OmegaConf.select(cfg, "augment.squeeze", default=[1, 1])
    squeeze = list(squeeze) if OmegaConf.is_list(squeeze) or isinstance(squeeze, list) else squeeze
    shear = OmegaConf.select(cfg, "augment.shear", default=0)
    squeezes = isinstance(squeeze, list) and squeeze != [1, 1]  # not a list: the augment.squeeze rule names it
    if OmegaConf.select(cfg, "data.pipeline") == "classic" and (squeezes or shear):
        return [
            f"augment.squeeze={squeeze} and augment.shear={shear} with data.pipeline=classic: torchvision's "
            f"transforms have no squeeze; use data.pipeline=tensor, or augment.squeeze=[1,1] augment.shear=0"
        ]
    return []


def mirrored_digits(cfg: DictConfig) -> list[str]:
    """Mirroring digits: a mirrored 2 is not a 2."""
    flip = OmegaConf.select(cfg, "augment.flip", default=0)
    if OmegaConf.select(cfg, "data.dataset") == "mnist" and is_number(flip) and flip > 0:
        return [
            f"augment.flip={flip!r} with data=mnist: a mirrored digit is another shape (a mirrored 2 is "
            f"not a 2); use augment=shift or augment=affine for digits, or augment.flip=0"
        ]
    return []


class BatchAugment:
    """Random shift, rotation, zoom and mirror of a batch of images ``(N, C, H, W)`` with a black (0) background."""

    def __init__(
        self,
        translate: int = 0,
        degrees: float = 0.0,
        scale: Sequence[float] = (1.0, 1.0),
        flip: float = 0.0,
        squeeze: Sequence[float] = (1.0, 1.0),
        shear: float = 0.0,
    ) -> None:
        arguments = {"translate": translate, "degrees": degrees, "scale": list(scale), "flip": flip,
                     "squeeze": list(squeeze), "shear": shear}  # fmt: skip
        check({"augment": arguments}, AUGMENT_RULES)
        self.translate, self.degrees, self.flip, self.shear = int(translate), float(degrees), float(flip), float(shear)
        self.scale = (float(scale[0]), float(scale[1]))
        self.squeeze = (float(squeeze[0]), float(squeeze[1]))

    @classmethod
    def from_config(cls, augment: dict[str, Any] | None) -> BatchAugment | None:
        """The augmentation an ``augment`` config group describes; None when it changes nothing (``augment=none``)."""
        keys = ("translate", "degrees", "scale", "flip", "squeeze", "shear")
        options = {k: v for k, v in (augment or {}).items() if k in keys}
        made = cls(**options)
        return made if made.active else None

    @property
    def active(self) -> bool:
        return bool(self.translate or self.flip or self.affine)

    @property
    def affine(self) -> bool:
        return bool(self.degrees or self.scale != (1.0, 1.0) or self.squeeze != (1.0, 1.0) or self.shear)

    @staticmethod
    def generator(device: torch.device, seed: int, epoch: int, rank: int, batch: int) -> torch.Generator:
        """The batch's own random stream: a pure function of its place in training."""
        state = np.random.SeedSequence([seed, epoch, rank, batch]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator(device=device).manual_seed(int(state))

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        n = images.shape[0]
        uniform = lambda low, high: torch.rand(n, generator=generator, device=images.device) * (high - low) + low  # noqa: E731
        shifts = torch.randint(-self.translate, self.translate + 1, (n, 2), generator=generator, device=images.device)
        mirror = torch.rand(n, generator=generator, device=images.device) < self.flip
        if self.affine:
            degrees, scale = uniform(-self.degrees, self.degrees), uniform(*self.scale)
            # drawn only when asked for: the recipes without them keep their random streams
            squeeze = uniform(*self.squeeze) if self.squeeze != (1.0, 1.0) else None
            shear = uniform(-self.shear, self.shear) if self.shear else None
            return self._affine(images, shifts, mirror, degrees, scale, squeeze, shear)
        if self.translate:
            images = self._shift(images, shifts)
        if self.flip:
            images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
        return images

    def _shift(self, images: Tensor, shifts: Tensor) -> Tensor:
        # Each image is cut from its zero-padded copy at its own offset: exact pixel moves, one gather.
        n, c, h, w = images.shape
        pad = self.translate
        padded = F.pad(images, (pad, pad, pad, pad))
        rows = (pad - shifts[:, 0, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (pad - shifts[:, 1, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        channel = torch.arange(c, device=images.device)[None, :, None, None]
        return padded[batch, channel, rows, cols]

    def _affine(
        self,
        images: Tensor,
        shifts: Tensor,
        mirror: Tensor,
        degrees: Tensor,
        scale: Tensor,
        squeeze: Tensor | None = None,
        shear: Tensor | None = None,
    ) -> Tensor:
        # affine_grid maps output coordinates to input ones in [-1, 1]: the inverse of the map applied to the image.
        n, _, h, w = images.shape
        angle = degrees * (math.pi / 180)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        sign = torch.where(mirror, -1.0, 1.0)
        tx, ty = -shifts[:, 1] * (2.0 / w), -shifts[:, 0] * (2.0 / h)
        theta = torch.stack([torch.stack([cos * sign, -sin, tx], 1), torch.stack([sin * sign, cos, ty], 1)], 1)
        if squeeze is not None or shear is not None:
            # the image is squeezed, diag(q, 1/q), and sheared, x += k y, before the rotation and zoom: the inverse of
            # [[1, k], [0, 1]] @ diag(q, 1/q) is [[1/q, -k/q], [0, q]], applied after the rotation's inverse
            q = squeeze if squeeze is not None else torch.ones_like(scale)
            k = shear if shear is not None else torch.zeros_like(scale)
            zero = torch.zeros_like(q)
            inverse = torch.stack([torch.stack([1 / q, -k / q], 1), torch.stack([zero, q], 1)], 1)
            theta = torch.cat([inverse @ theta[:, :, :2], theta[:, :, 2:]], 2)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def classic_transforms(self, size: int) -> list[Any]:
        """The same ranges as torchvision transforms v2 on the padded ``size`` x ``size`` PIL image (the classic
        pipeline); RandomAffine rounds its shift to whole pixels, as the tensor path draws it."""
        from torchvision.transforms import InterpolationMode, v2

        steps: list[Any] = []
        if self.affine:
            steps.append(
                v2.RandomAffine(
                    self.degrees,
                    scale=self.scale,
                    interpolation=InterpolationMode.BILINEAR,
                    translate=(self.translate / size,) * 2 if self.translate else None,
                )
            )
        elif self.translate:
            steps.append(v2.RandomCrop(size, padding=self.translate))
        if self.flip:
            steps.append(v2.RandomHorizontalFlip(self.flip))
        return steps

    def __repr__(self) -> str:
        return (
            f"BatchAugment(translate={self.translate}, degrees={self.degrees}, scale={self.scale}, flip={self.flip}, "
            f"squeeze={self.squeeze}, shear={self.shear})"
        )
