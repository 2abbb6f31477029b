"""The curvature SDLM divides by, h_kk for every parameter, averaged over patterns; two ways to compute it.

Both split the network at the input z of its trailing layers without trainable parameters (LeNet1998: F6's 84
outputs, before the fixed RBF units; LeNet5: its logits) and start from H, a Hessian in z (``source``):

- ``loss`` (the default): the per-pattern loss's, taken through those fixed layers; positive semi-definite for the
  MAP criterion and for cross-entropy. It vanishes for a pattern the network classifies with confidence (the MAP
  criterion, like cross-entropy, is flat there), so the estimate shrinks as the network learns.
- ``penalty`` (LeNet1998's RBF head only): the Hessian of the correct class's penalty y_D = sum_j (z_j - w_Dj)^2
  alone, 2 for every unit of z and every pattern: the curvature of the criterion's squared-distance term, which the
  competitive term's does not cancel (docs/lecun1998.md measures the difference).

Two ways to compute h_kk from it:

- ``backprop_diagonal`` (the default, the paper's own, Appendix C of LeCun et al. 1998): second derivatives are
  back-propagated layer by layer with every cross term dropped: d2E/da_i^2 = f'(a_i)^2 sum_k w_ki^2 d2E/da_k^2 at
  each unit, d2E/dz^2 = diag(H) at the split, and a weight gets sum over its connections of x_j^2 d2E/da_i^2. One
  forward and one backward pass for all the patterns at once, through a "squared" copy of the network.
- ``gauss_newton_diagonal``: the exact diagonal of the Gauss-Newton matrix J^T H J (J = dz/dw, by ``torch.func``:
  one Jacobian and one Hessian per pattern). It keeps the cross terms, between units and between a shared weight's
  connections, that the paper drops (docs/lecun1998.md compares the two).

``tests/test_sdlm.py`` checks both against brute-force versions built from full Jacobian matrices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, hessian, jacrev, vmap

from src.models import outputs
from src.models.lenet5 import ACTIVATIONS
from src.models.lenet1998 import EuclideanRBF, SparseConv, Squash, Subsampling

ELEMENTWISE = (*ACTIVATIONS.values(), Squash)  # units whose derivative is read pointwise, f'(a)


def split_network(net: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """(body, head): the network as body then head, where head holds the trailing layers that have no trainable
    parameters and are not a unit's squashing function (LeNet1998's RBF units, after F6's squashing; nothing for
    LeNet5, whose last layer is trained). A squashing function stays in the body: its second derivative is what the
    Gauss-Newton approximation leaves out, and in the head it would make H indefinite."""
    layers = list(net.classifier)
    cut = len(layers)
    while (
        cut > 0
        and not any(p.requires_grad for p in layers[cut - 1].parameters())
        and not isinstance(layers[cut - 1], ELEMENTWISE)
    ):
        cut -= 1
    return nn.Sequential(net.features, *layers[:cut]), nn.Sequential(*layers[cut:])


SOURCES = ("loss", "penalty")  # what the curvature starts from at the split (the module's docstring)


def loss_hessian(net: nn.Module, head: nn.Module, z: Tensor, labels: Tensor, source: str = "loss") -> Tensor:
    """Per pattern, the Hessian in ``z`` (the split's values) of the loss, or of the correct class's penalty (minus
    its logit), (N, |z|, |z|)."""
    if source not in SOURCES:
        raise ValueError(f"source={source!r}: must be one of {', '.join(SOURCES)}")
    if source == "penalty" and not any(isinstance(m, EuclideanRBF) for m in head.modules()):
        # a logit is linear in z: its Hessian, and every h_kk from it, would be 0
        raise ValueError(
            f"source='penalty' needs RBF units after the split (LeNet1998 with output=rbf); this network's head is "
            f"{[type(m).__name__ for m in head] or 'empty'}: use source='loss'"
        )

    def pattern_loss(z1: Tensor, label: Tensor) -> Tensor:
        logits = head(z1[None])
        if source == "penalty":
            return -logits[0].gather(0, label[None]).sum()
        return outputs.loss(net, logits, label[None], reduction="sum")

    return vmap(hessian(pattern_loss), in_dims=(0, 0))(z, labels)


def backprop_diagonal(net: nn.Module, inputs: Tensor, labels: Tensor, source: str = "loss") -> dict[Tensor, Tensor]:
    """The paper's h_kk for each trainable parameter (see the module's docstring), averaged over the patterns
    ``inputs`` (network inputs, (N, C, H, W)) and their ``labels``; keyed by the parameter; ``source``: what H is.

    How: a forward pass carries, beside each layer's real output x, a shadow tensor whose value is x^2 and whose
    gradient path is the layer's Jacobian with every entry squared (weights squared, f'(a)^2 at each unit). Seeding
    the backward pass with diag(H) at the split then leaves, on a squared copy of each weight, exactly
    sum over connections of x_j^2 d2E/da_i^2."""
    body, head = split_network(net)
    was_training = net.training
    net.eval()
    squared: dict[Tensor, Tensor] = {}  # parameter -> the leaf whose gradient is its h_kk, summed over the patterns

    def leaf(param: Tensor, value: Tensor) -> Tensor:
        squared[param] = value.detach().clone().requires_grad_(True)
        return squared[param]

    def passing(x_out: Tensor, shadow: Tensor, gain: Tensor | float = 1.0) -> Tensor:
        # value x_out^2, gradient gain x d(shadow): the next layer reads squared inputs, the backward squared Jacobians
        return x_out.detach().square() + gain * (shadow - shadow.detach())

    try:
        x, t = inputs.detach(), inputs.detach().square()
        for module in [*body[0], *body[1:]]:
            with torch.no_grad():
                x_out = module(x)
            if isinstance(module, (nn.Conv2d, nn.Linear, SparseConv)):
                weight = leaf(module.weight, module.weight.square())
                bias = leaf(module.bias, torch.zeros_like(module.bias))
                if isinstance(module, SparseConv):
                    dense = weight.new_zeros(module.out_channels, module.in_channels, *module.weight.shape[1:])
                    shadow = F.conv2d(t, dense.index_put((module.pairs[0], module.pairs[1]), weight), bias)
                elif isinstance(module, nn.Conv2d):
                    shadow = F.conv2d(t, weight, bias, module.stride, module.padding)
                else:
                    shadow = F.linear(t, weight, bias)
                t = passing(x_out, shadow)
            elif isinstance(module, Subsampling):  # a 2x2 sum times a coefficient shared by its four connections
                coefficient = leaf(module.weight, module.weight.square())
                bias = leaf(module.bias, torch.zeros_like(module.bias))
                t = passing(x_out, F.avg_pool2d(t, 2) * 4 * coefficient[:, None, None] + bias[:, None, None])
            elif isinstance(module, nn.AvgPool2d):  # each input enters with weight 1/4: squared 1/16
                t = passing(x_out, F.avg_pool2d(t, module.kernel_size, module.stride) / (module.kernel_size**2))
            elif isinstance(module, nn.MaxPool2d):  # each unit copies its largest input: weight 1 there, 0 elsewhere
                _, where = F.max_pool2d(x, module.kernel_size, module.stride, return_indices=True)
                t = passing(x_out, t.flatten(2).gather(2, where.flatten(2)).view_as(x_out))
            elif isinstance(module, ELEMENTWISE):
                with torch.enable_grad():
                    a = x.detach().requires_grad_(True)
                    (slope,) = torch.autograd.grad(module(a).sum(), a)
                t = passing(x_out, t, slope.square())
            elif isinstance(module, nn.Flatten):
                t = t.flatten(module.start_dim, module.end_dim)
            elif not isinstance(module, (nn.Identity, nn.Dropout)):  # dropout: the network as evaluated
                raise ValueError(
                    f"SDLM's back-propagated curvature does not cover {type(module).__name__} layers; "
                    f"use optimizer.curvature=gauss_newton for this network"
                )
            x = x_out
        boundary = torch.diagonal(loss_hessian(net, head, x, labels, source), dim1=1, dim2=2)  # d2E/dz^2 per pattern
        (boundary.detach() * t).sum().backward()
    finally:
        net.train(was_training)
    return {param: value.grad / len(labels) for param, value in squared.items()}


def gauss_newton_diagonal(
    net: nn.Module, inputs: Tensor, labels: Tensor, source: str = "loss", chunk: int = 20
) -> dict[Tensor, Tensor]:
    """Each trainable parameter's h_kk, the diagonal of the Gauss-Newton matrix J^T H J averaged over the patterns
    ``inputs`` (network inputs, (N, C, H, W)) and their ``labels``, H the per-pattern loss's Hessian in z or the
    penalty's (``source``); keyed by the parameter. ``chunk`` patterns at a time bound the memory (chunk x |z| x
    parameters)."""
    body, head = split_network(net)
    params = {name: p.detach() for name, p in body.named_parameters() if p.requires_grad}
    buffers = dict(body.named_buffers())
    was_training = net.training
    net.eval()  # the estimate reads the network as it is, without dropout's noise

    def features(weights: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(body, (weights, buffers), (x[None],))[0]

    per_pattern_jacobian = vmap(jacrev(features), in_dims=(None, 0))
    totals = {name: torch.zeros_like(p) for name, p in params.items()}
    try:
        with torch.no_grad():
            z_all = body(inputs)
        for start in range(0, len(labels), chunk):
            x, y, z = inputs[start : start + chunk], labels[start : start + chunk], z_all[start : start + chunk]
            jacobians = per_pattern_jacobian(params, x)  # name -> (n, |z|, *shape)
            curvature = loss_hessian(net, head, z, y, source)  # (n, |z|, |z|)
            for name, jac in jacobians.items():
                flat = jac.flatten(2)  # (n, |z|, k)
                totals[name] += (flat * torch.bmm(curvature, flat)).sum((0, 1)).view_as(totals[name])
    finally:
        net.train(was_training)
    named = dict(body.named_parameters())
    return {named[name]: total / len(labels) for name, total in totals.items()}


CURVATURES = {"backprop": backprop_diagonal, "gauss_newton": gauss_newton_diagonal}  # SDLM's `curvature` option
