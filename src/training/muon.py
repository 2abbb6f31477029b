"""Muon: SGD with Nesterov momentum whose update for each weight matrix is replaced by the nearest semi-orthogonal
matrix (K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024; the optimizer of the
CIFAR-10 and NanoGPT speedruns).

A matrix's momentum is orthogonalised by a few Newton-Schulz iterations (U S V^T -> roughly U V^T): every direction
of the update moves by about the same amount, where plain SGD's update is dominated by a few. A convolution's kernel
(out, in, kh, kw) is the matrix of its ``out`` filters, each flattened, as in Jordan's CIFAR-10 runs (LeNet1998's
sparse C3 keeps one 5x5 kernel per connection of Table I: its matrix has a row per connection, 60, not per map);
``torch.optim.Muon`` takes only 2-D parameters, so convolutions need this class. Biases, and the parameters of any
group with ``orthogonalize=False`` (``LitLeNet5`` puts the network's output layer there, as Jordan advises), take a
plain SGD step with Nesterov momentum at ``lr * plain_lr_scale``. Weight decay is decoupled for the orthogonalised
matrices (as in ``torch.optim.Muon``) and L2, as in ``torch.optim.SGD``, for the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

# the quintic iteration's coefficients from Jordan's implementation (and torch.optim.Muon): fast rather than exact,
# in five steps they take every singular value above about 1/500 of the matrix's norm into roughly [0.7, 1.2]
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: Tensor, steps: int = 5) -> Tensor:
    """Newton-Schulz iterations towards U V^T for ``matrix`` = U S V^T (2-D)."""
    a, b, c = NEWTON_SCHULZ
    x = matrix / (matrix.norm() + 1e-7)  # singular values at most 1, where the iteration converges
    wide = x.size(0) <= x.size(1)
    if not wide:  # iterate on the smaller Gram matrix
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.T


class Muon(torch.optim.Optimizer):
    """``lr``: the orthogonalised matrices' rate; ``momentum`` and ``nesterov``: as in SGD, for every parameter;
    ``weight_decay``: decoupled for the matrices, L2 for the rest; ``ns_steps``: Newton-Schulz iterations per
    step; ``plain_lr_scale``: the SGD-stepped parameters' rate as a multiple of ``lr``."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        plain_lr_scale: float = 5.0,
    ) -> None:
        if not lr > 0 or not 0 <= momentum < 1 or not weight_decay >= 0 or not ns_steps >= 1 or not plain_lr_scale > 0:
            raise ValueError(
                f"Muon needs lr > 0, momentum in [0, 1), weight_decay >= 0, ns_steps >= 1 and plain_lr_scale > 0: "
                f"got {lr}, {momentum}, {weight_decay}, {ns_steps}, {plain_lr_scale}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "ns_steps": int(ns_steps),
            "plain_lr_scale": plain_lr_scale,
            "orthogonalize": True,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                matrix = group["orthogonalize"] and p.ndim >= 2
                grad = p.grad if matrix or not decay else p.grad.add(p, alpha=decay)
                state = self.state[p]
                if "momentum_buffer" not in state:  # as torch.optim.SGD: the buffer starts at the first gradient
                    buffer = state["momentum_buffer"] = grad.clone()
                else:
                    buffer = state["momentum_buffer"].mul_(momentum).add_(grad)
                update = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
                if matrix:
                    rows = update.reshape(len(update), -1)
                    tall = max(1.0, rows.size(0) / rows.size(1)) ** 0.5  # tall matrices: rows of unit scale
                    if decay:
                        p.mul_(1 - lr * decay)
                    p.add_(orthogonalize(rows, group["ns_steps"]).view_as(p), alpha=-lr * tall)
                else:
                    p.add_(update, alpha=-lr * group["plain_lr_scale"])
        return loss
