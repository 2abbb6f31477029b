"""Calibration: do the softmax confidences mean what they say? (Guo et al. 2017, "On Calibration of Modern Neural
Networks".) Expected calibration error with torchmetrics' ``MulticlassCalibrationError`` (equal-width confidence bins,
15 as in the paper), the negative log-likelihood, the per-bin reliability, and temperature scaling fitted on the
validation split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassCalibrationError


def expected_calibration_error(logits: Tensor, labels: Tensor, bins: int = 15) -> float:
    """Sum over confidence bins of |accuracy - mean confidence|, weighted by the bin's share of the samples."""
    metric = MulticlassCalibrationError(num_classes=logits.shape[1], n_bins=bins, norm="l1").to(logits.device)
    return float(metric(logits.softmax(dim=1), labels))


def negative_log_likelihood(logits: Tensor, labels: Tensor) -> float:
    return float(F.cross_entropy(logits, labels))


@dataclass(frozen=True)
class Reliability:
    """Per equal-width confidence bin: its edges, how many predictions fell in it, their accuracy and confidence."""

    edges: list[float]
    counts: list[int]
    accuracy: list[float | None]
    confidence: list[float | None]


def reliability(logits: Tensor, labels: Tensor, bins: int = 15) -> Reliability:
    """The reliability diagram's numbers, binned as torchmetrics bins them (a confidence on an edge goes left)."""
    confidence, predicted = logits.softmax(dim=1).max(dim=1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(confidence.double().cpu(), edges[1:-1], right=False)
    counts, accuracy, mean_confidence = [], [], []
    for b in range(bins):
        members = which == b
        n = int(members.sum())
        counts.append(n)
        accuracy.append(float(correct.cpu()[members].mean()) if n else None)
        mean_confidence.append(float(confidence.double().cpu()[members].mean()) if n else None)
    return Reliability(edges.tolist(), counts, accuracy, mean_confidence)


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the NLL of ``logits / T`` (one parameter, so it never changes a
    prediction): L-BFGS on log T, as Guo et al. fit it on a held-out split."""
    log_t = torch.zeros(1, dtype=torch.float64, device=logits.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")
    logits, labels = logits.detach().double(), labels.detach()

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())
