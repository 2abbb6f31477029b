"""Which pixels a decision rests on, with Captum: saliency (|d logit / d pixel|, Simonyan et al. 2014), Integrated
Gradients from a black image (Sundararajan et al. 2017) and Grad-CAM on the second conv layer (Selvaraju et al. 2017),
each for the predicted class, on the [0, 1] pixels the attacks use.

Grad-CAM's map is the second conv layer's own 10x10 grid (for a 32x32 padded input), upsampled to the image: coarse,
but it shows where the class evidence sits, which saliency's speckle does not; on a 28x28 digit that is the part worth
keeping.
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from torch import Tensor, nn

from src.training.adversarial import PixelModel


def attribute(model: PixelModel, last_conv: nn.Module, images: Tensor, methods: list[str], steps: int = 50) -> dict:
    """Each method's map for each image (N, 1, 28, 28), for the class the model predicts; also the predictions."""
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    maps: dict[str, Tensor] = {}
    images = images.detach().clone().requires_grad_(True)  # Captum's methods differentiate with respect to these
    for method in methods:
        if method == "saliency":
            maps[method] = Saliency(model).attribute(images, target=predicted, abs=True)
        elif method == "integrated_gradients":
            ig = IntegratedGradients(model)
            maps[method] = ig.attribute(images, baselines=torch.zeros_like(images), target=predicted, n_steps=steps)
        elif method == "grad_cam":
            cam = LayerGradCam(model, last_conv).attribute(images, target=predicted, relu_attributions=True)
            # the conv output sits on the padded input's grid: upsample to it, then drop the padding
            padded = LayerAttribution.interpolate(
                cam, (images.shape[-2] + 2 * model.preprocessing.pad,) * 2, "bilinear"
            )
            p = model.preprocessing.pad
            maps[method] = padded[..., p : padded.shape[-2] - p, p : padded.shape[-1] - p] if p else padded
        else:
            raise ValueError(f"unknown attribution method {method!r}")
    return {"predicted": predicted, "maps": {k: v.detach() for k, v in maps.items()}}


def normalised(maps: Tensor) -> Tensor:
    """Each map scaled by its own largest magnitude, for display (signs kept)."""
    peak = maps.abs().flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, *([1] * (maps.dim() - 1)))
    return maps / peak
