"""Learning-rate schedules that torch.optim.lr_scheduler has no class for, as factors for its ``LambdaLR``."""

from __future__ import annotations

import bisect
from collections.abc import Sequence


class Piecewise:
    """A constant factor per span of epochs: ``factors[i]`` from epoch ``boundaries[i-1]`` (0 for the first) until
    ``boundaries[i]``; the last factor thereafter. ``LambdaLR(optimizer, Piecewise(...))`` multiplies the optimizer's
    own lr by it (conf/scheduler/lecun1998.yaml: the rates of LeCun et al. 1998). A class, not a lambda, so that the
    scheduler's state saves in a checkpoint."""

    def __init__(self, boundaries: Sequence[int], factors: Sequence[float]) -> None:
        if len(factors) != len(boundaries) + 1 or list(boundaries) != sorted(boundaries):
            raise ValueError(
                f"Piecewise needs increasing boundaries and one factor more than boundaries: got boundaries="
                f"{list(boundaries)}, factors={list(factors)}"
            )
        self.boundaries, self.factors = [int(b) for b in boundaries], [float(f) for f in factors]

    def __call__(self, epoch: int) -> float:
        return self.factors[bisect.bisect_right(self.boundaries, epoch)]
