"""White-box L-infinity attacks in pixel space: FGSM (Goodfellow et al. 2015) and PGD with a random start (Madry et
al. 2018), on a model that takes [0, 1] images (``src.training.adversarial.PixelModel``: the training preprocessing
inside it; adversarial training's own PGD examples come from there too).

Written here rather than taken from torchattacks (whose FGSM the tests check this one against, image for image): an
accuracy-under-attack figure only needs to know whether *some* step fooled each image, so PGD here keeps the first
adversarial image it finds and drops fooled images from the remaining steps. On a standard LeNet-5 most images fall in
the first few steps, which makes a 20-step PGD over 6 epsilons several times cheaper than running every step on every
image, and it is never weaker than the final iterate alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from src.models import outputs


def _input_gradient(model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    loss = outputs.loss(model, model(x), labels, reduction="sum")  # sum: each image's gradient is its own
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, images: Tensor, labels: Tensor, epsilon: float) -> Tensor:
    """One step of size ``epsilon`` along the sign of the loss gradient, clipped to [0, 1]."""
    if epsilon == 0:
        return images.clone()
    return (images + epsilon * _input_gradient(model, images, labels).sign()).clamp(0, 1).detach()


@dataclass
class AttackResult:
    adversarial: Tensor  # (N, 1, 28, 28): the first image found that fools the model, else the last iterate
    fooled: Tensor  # (N,) bool: the model's prediction on ``adversarial`` is wrong


def pgd(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epsilon: float,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """Projected gradient descent on the loss within the L-infinity ball of radius ``epsilon`` (and [0, 1]), from a
    uniform random start; each image leaves the loop once it is misclassified."""
    with torch.no_grad():
        fooled = model(images).argmax(dim=1) != labels
    adversarial = images.clone()
    if epsilon == 0:
        return AttackResult(adversarial, fooled)
    noise = torch.rand(images.shape, generator=generator, device=images.device) * 2 - 1
    active = (~fooled).nonzero().flatten()
    x = (images[active] + epsilon * noise[active]).clamp(0, 1)
    for step in range(steps + 1):
        x.requires_grad_(True)
        logits = model(x)  # one forward per step: its prediction decides, its loss gives the next step
        wrong = (logits.argmax(dim=1) != labels[active]).detach()
        done = wrong | (step == steps)
        adversarial[active[done]] = x[done].detach()
        fooled[active[wrong]] = True
        if bool(done.all()):
            break
        (grad,) = torch.autograd.grad(outputs.loss(model, logits, labels[active], reduction="sum"), x)
        keep = ~done
        active, origin = active[keep], images[active[keep]]
        x = x.detach()[keep] + step_size * grad[keep].sign()
        x = torch.min(torch.max(x, origin - epsilon), origin + epsilon).clamp(0, 1)
    return AttackResult(adversarial.detach(), fooled)
