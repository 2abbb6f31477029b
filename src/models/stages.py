"""The network's insides: its stages in order (conv1 + activation, pooling, ..., the hidden units) and one forward
pass that reads each stage's output by hooks on the real call. Used by ``src.visualize`` and ``src.demo``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from src.models.lenet5 import ACTIVATIONS, POOLINGS


def conv_layers(net: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The conv layers of ``net.features``, named conv1, conv2, ... in the network's order."""
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    return [(f"conv{i}", m) for i, m in enumerate(convs, start=1)]


def feature_stages(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of ``net.features`` whose outputs are shown, found by type: each activation (named by the conv it
    follows and what lies between, e.g. ``conv1 + BatchNorm2d + ReLU``) and each pooling layer (``pool1 (MaxPool2d)``)."""
    return _stages(net.features, nn.Conv2d, "conv", tuple(POOLINGS.values()))


def hidden_stages(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The activation modules of ``net.classifier`` (the hidden units: 120 and 84 in the classic network), named by
    the linear layer they follow and what lies between, e.g. ``fc1 + ReLU``."""
    return _stages(net.classifier, nn.Linear, "fc")


def _stages(
    modules: nn.Module, layer: type[nn.Module], prefix: str, poolings: tuple[type[nn.Module], ...] = ()
) -> list[tuple[str, nn.Module]]:
    activations = tuple(ACTIVATIONS.values())
    stages: list[tuple[str, nn.Module]] = []
    count, between = 0, []
    for module in modules:
        kind = type(module).__name__
        if isinstance(module, layer):
            count, between = count + 1, []
        elif isinstance(module, activations):
            stages.append((" + ".join([f"{prefix}{count}", *between, kind]), module))
        elif isinstance(module, poolings):
            stages.append((f"pool{count} ({kind})", module))
        else:
            between.append(kind)
    return stages


def run_network(net: nn.Module, x: Tensor, watch: Sequence[nn.Module] = ()) -> tuple[Tensor, list[Tensor], Tensor]:
    """One forward pass in eval mode: the logits, the output of each module in ``watch`` (in that order) and the
    penultimate features (the input of the last layer, ``net.classifier[-1]``), all read by hooks on the real call."""
    outputs: dict[int, Tensor] = {}
    penultimate: list[Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _in, out, k=k: outputs.__setitem__(k, out.detach()))
        for k, m in enumerate(watch)
    ]
    hooks.append(net.classifier[-1].register_forward_pre_hook(lambda _m, args: penultimate.append(args[0].detach())))
    try:
        net.eval()
        with torch.no_grad():
            logits = net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, [outputs[k] for k in range(len(watch))], penultimate[0]
