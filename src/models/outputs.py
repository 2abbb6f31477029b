"""What a network's outputs mean: its loss and its class probabilities, one definition for every network.

LeNet5's outputs are plain logits: cross-entropy and softmax. LeNet1998's are minus its RBF penalties, and its model
(section II.C of LeCun et al. 1998) has an eleventh, "rubbish" class of constant penalty j (``net.rubbish_logit`` =
-j): appending that constant as one more logit makes the MAP criterion E = y_D + log(e^{-j} + sum_i e^{-y_i})
exactly the cross-entropy over the eleven, and the softmax over the eleven the paper's probabilities
p_i = e^{-y_i} / (e^{-j} + sum_k e^{-y_k}). The ten class probabilities then sum to less than 1: the rest is
rubbish. Training, eval, predict, trust, visualize and the demo all read them here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def with_rubbish(net: nn.Module, logits: Tensor) -> Tensor:
    """The logits with the rubbish class's constant appended as a last column, for a network that has one."""
    rubbish = getattr(net, "rubbish_logit", None)
    if rubbish is None:
        return logits
    return torch.cat([logits, logits.new_full((*logits.shape[:-1], 1), rubbish)], dim=-1)


def loss(
    net: nn.Module, logits: Tensor, labels: Tensor, label_smoothing: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy for LeNet5, the MAP criterion for LeNet1998 (the same formula, see the module's docstring)."""
    return F.cross_entropy(with_rubbish(net, logits), labels, label_smoothing=label_smoothing, reduction=reduction)


def probabilities(net: nn.Module, logits: Tensor) -> Tensor:
    """Each class's probability, (N, classes): softmax, or the paper's p_i with the rubbish class's share left out."""
    return with_rubbish(net, logits).softmax(dim=-1)[..., : logits.shape[-1]]
