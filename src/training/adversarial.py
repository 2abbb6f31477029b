"""Adversarial training (Madry et al. 2018, ``adversarial.epsilon > 0``): each training batch replaced by its PGD
examples, within an L-infinity ball of radius epsilon around each image, in the data set's own [0, 1] pixels.

``PixelModel`` is the network as a function of those pixels; ``src.trust``'s attacks use it too, so that an epsilon
means the same in training and in the report.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from src.core.settings import Rule, integer, is_number
from src.data.preprocessing import Preprocessing
from src.models import outputs

ADVERSARIAL_RULES = [  # checked by src.train before any work
    Rule(
        "adversarial.epsilon",
        lambda v: is_number(v) and 0 <= v <= 1,
        "must be a number in [0, 1] (pixel units of [0, 1] images; 0: no adversarial training)",
    ),
    integer("adversarial.steps", 1),
    Rule(
        "adversarial.step_size",
        lambda v: v is None or (is_number(v) and 0 < v <= 1),
        "must be null (2.5 * epsilon / steps) or a number in (0, 1]",
    ),
]


class PixelModel(nn.Module):
    """A trained network as a function of the data set's own [0, 1] pixels (N, 1, 28, 28): the preprocessing it was
    trained with inside it, so epsilons are in pixel units and every attack clips to the valid image range."""

    def __init__(self, net: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.net, self.preprocessing = net, preprocessing
        self.rubbish_logit = getattr(net, "rubbish_logit", None)  # its loss is the network's (src.models.outputs)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net(self.preprocessing(pixels, max_value=1.0))


def pgd_step_size(epsilon: float, steps: int, step_size: float | None) -> float:
    """The configured step size, or Madry et al.'s rule of thumb: 2.5 * epsilon / steps."""
    return step_size if step_size is not None else 2.5 * epsilon / steps


def pgd_examples(
    model: nn.Module, images: Tensor, labels: Tensor, epsilon: float, steps: int, step_size: float
) -> Tensor:
    """Madry et al.'s training examples: every image takes every step from a uniform random start, and the last
    iterate is returned; no per-step prediction, so no device sync in the training step."""
    x = (images + epsilon * (torch.rand_like(images) * 2 - 1)).clamp(0, 1)
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(outputs.loss(model, model(x), labels, reduction="sum"), x)
        x = torch.min(torch.max(x.detach() + step_size * grad.sign(), images - epsilon), images + epsilon).clamp(0, 1)
    return x.detach()


def adversarial_batch(
    net: nn.Module, x: Tensor, y: Tensor, preprocessing: Preprocessing, settings: dict[str, float]
) -> Tensor:
    """A training batch of network inputs -> its PGD examples, as network inputs: every step taken within
    ``settings["epsilon"]`` of each image in pixel space (the 28x28 pixels; the padding stays black), crafted with the
    network in eval mode."""
    epsilon, steps = settings["epsilon"], settings["steps"]
    net.eval()
    try:
        pixels = pgd_examples(
            PixelModel(net, preprocessing),
            preprocessing.to_pixels(x).detach(),
            y,
            epsilon,
            steps,
            pgd_step_size(epsilon, steps, settings.get("step_size")),
        )
    finally:
        net.train()
    return preprocessing(pixels, max_value=1.0)
