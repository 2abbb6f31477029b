"""How the data set's 28x28 images become the network's input, and back again.

Padded by ``pad`` black pixels on each side (2: LeNet-5's 32x32), then normalised with the training split's mean and
std: ``x = (pixels / 255 - mean) / std``. One ``Preprocessing``, made by the DataModule from the training split and
saved in every checkpoint, serves wherever an image meets the network: the training batches, adversarial training, and
``src.eval``, ``src.predict``, ``src.export``, ``src.trust``, ``src.visualize`` and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor


def pad_images(images: Tensor, pad: int) -> Tensor:
    """Black borders of ``pad`` pixels around the last two dimensions (a new tensor, of the images' dtype)."""
    return F.pad(images, (pad,) * 4)


@dataclass(frozen=True)
class Preprocessing:
    """``pad``, and the ``mean`` and ``std`` of the training split's [0, 1] pixels (0 and 1: not normalised)."""

    pad: int = 2
    mean: float = 0.0
    std: float = 1.0

    def normalize_(self, padded: Tensor, max_value: float = 255.0) -> Tensor:
        """Padded float pixels on the 0..``max_value`` scale -> the network's input, in place (a training batch)."""
        scale, shift = self._scale_shift(max_value)
        return padded.mul_(scale).sub_(shift)

    def __call__(self, images: Tensor, max_value: float = 255.0) -> Tensor:
        """Images (N, 28, 28) or (N, C, 28, 28), uint8 or float on the 0..``max_value`` scale (255; 1 for [0, 1]
        pixels) -> the network's input (N, C, side, side). Differentiable: attacks take gradients through it."""
        x = images.unsqueeze(1) if images.dim() == 3 else images
        scale, shift = self._scale_shift(max_value)
        return pad_images(x.float(), self.pad) * scale - shift

    def to_pixels(self, x: Tensor) -> Tensor:
        """The inverse: network inputs (N, C, side, side) -> the data set's own pixels, unpadded, on [0, 1]."""
        p = self.pad
        pixels = x * self.std + self.mean
        return pixels[..., p : x.shape[-2] - p, p : x.shape[-1] - p].clamp(0.0, 1.0)

    def _scale_shift(self, max_value: float) -> tuple[float, float]:
        # (x / max_value - mean) / std, folded into one multiply and one subtract
        return 1.0 / (max_value * self.std), self.mean / self.std

    def torchvision_transforms(self, between: list[Any] | None = None) -> Any:
        """The same as torchvision transforms of a PIL image, as the tutorials write them (``data.pipeline=classic``);
        ``between``: transforms of the padded PIL image (augmentation) before it becomes a tensor."""
        from torchvision import transforms

        return transforms.Compose(
            [
                transforms.Pad(self.pad),
                *(between or []),
                transforms.ToTensor(),
                transforms.Normalize((self.mean,), (self.std,)),
            ]
        )

    @classmethod
    def from_range(cls, pad: int, background: float, ink: float) -> Preprocessing:
        """The preprocessing whose inputs are ``background`` for a blank pixel and ``ink`` for a fully inked one
        (LeCun et al. 1998: -0.1 and 1.175, "which makes the mean input roughly 0, and the variance roughly 1")."""
        std = 1.0 / (ink - background)
        return cls(pad, -background * std, std)

    def state(self) -> dict[str, Any]:
        return {"pad": self.pad, "mean": self.mean, "std": self.std}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Preprocessing:
        return cls(int(state["pad"]), float(state["mean"]), float(state["std"]))
