"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C; LeCun, Bottou, Orr and Mueller,
"Efficient BackProp", 1998, section 9.1), the optimizer LeNet-5 was trained with.

Each parameter w_k moves by -eps / (mu + h_kk) times its gradient: a global rate eps (``lr``, scheduled like any
rate, e.g. ``scheduler=lecun1998``), divided by a safety margin mu plus the parameter's own curvature h_kk, an
estimate of the diagonal of the Gauss-Newton matrix averaged over a few hundred training patterns. Parameters the
loss is flat in take larger steps, steep ones smaller. The curvature is not the optimizer's to compute: the
``SDLMCurvature`` callback re-estimates it before each pass (``src.training.curvature``) and hands it over with
``set_curvature``; a step before any estimate is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from hydra.utils import get_class
from torch import Tensor

from src.training.curvature import CURVATURES, SOURCES


class SDLM(torch.optim.Optimizer):
    """``lr``: the global rate eps (the paper: 0.0005 for the first two passes, then lower); ``mu``: the margin that
    keeps the step bounded where the curvature is near zero (the paper: 0.02); ``curvature_patterns``: how many
    training patterns each curvature estimate averages over (the paper: 500); ``curvature``: how h_kk is computed,
    ``backprop`` (the paper's back-propagated diagonal) or ``gauss_newton`` (the exact Gauss-Newton diagonal), see
    ``src.training.curvature``; ``curvature_from``: what the curvature starts from at the network's output, the
    loss (``loss``) or, for LeNet1998's RBF head, the correct class's penalty alone (``penalty``)."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.0005,
        mu: float = 0.02,
        curvature_patterns: int = 500,
        curvature: str = "backprop",
        curvature_from: str = "loss",
    ) -> None:
        if (
            not lr > 0
            or not mu > 0
            or not curvature_patterns > 0
            or curvature not in CURVATURES
            or curvature_from not in SOURCES
        ):
            raise ValueError(
                f"SDLM needs lr > 0, mu > 0, curvature_patterns > 0, curvature one of {', '.join(CURVATURES)} and "
                f"curvature_from one of {', '.join(SOURCES)}: got {lr}, {mu}, {curvature_patterns}, {curvature!r}, "
                f"{curvature_from!r}"
            )
        super().__init__(params, {"lr": lr, "mu": mu})
        self.curvature_patterns, self.curvature = int(curvature_patterns), curvature
        self.curvature_from = curvature_from

    @torch.no_grad()
    def set_curvature(self, curvature: dict[Tensor, Tensor]) -> None:
        """Each parameter's h_kk (a tensor of its shape, >= 0), keyed by the parameter itself."""
        for group in self.param_groups:
            for p in group["params"]:
                if p in curvature:
                    self.state[p]["curvature"] = curvature[p].detach().to(p.device, p.dtype).clone()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            missing = [p for p in params if "curvature" not in self.state[p]]
            if missing:
                raise RuntimeError(
                    f"SDLM has no curvature estimate for {len(missing)} parameter tensor(s): the SDLMCurvature callback "
                    f"sets it before each training pass (src.train attaches it with optimizer=sdlm); without Lightning, "
                    f"call optimizer.set_curvature(src.training.curvature.backprop_diagonal(...)) first"
                )
            # w -= eps * g / (mu + h): one fused pass over all the parameters
            denominators = torch._foreach_add([self.state[p]["curvature"] for p in params], group["mu"])
            torch._foreach_addcdiv_(params, [p.grad for p in params], denominators, value=-group["lr"])
        return loss


def is_sdlm(target: str | None) -> bool:
    """Whether an optimizer's ``_target_`` is SDLM or a subclass of it: what needs the curvature callback, and what
    Lightning's lr finder cannot step. False for a target that cannot be imported (the config check names it)."""
    try:
        return issubclass(get_class(target), SDLM)
    except Exception:
        return False
