"""The network's insides: its stages in order (conv1 + activation, pooling, ..., the hidden units) and one forward
pass that reads each stage's output by hooks on the real call. Used by ``src.visualize``, ``src.demo`` and trust.

LeNet1998 names its layers as the paper does (C1, S2, C3, S4, C5, F6): its stages carry those names, each the
output of a layer after its squashing function (``C1_f``), or of a plain pooling layer that has none."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from src.models.lenet5 import ACTIVATIONS, POOLINGS
from src.models.lenet1998 import SparseConv


def paper_named(modules: nn.Module) -> bool:
    """Whether the layers are named (LeNet1998's C1, S2, ...) rather than numbered (LeNet5's Sequential)."""
    return not next(iter(modules.named_children()))[0].isdigit()


def conv_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The conv layers of ``net.features`` in the network's order, named conv1, conv2, ... (LeNet1998: C1, C3, C5;
    its C3 is a ``SparseConv``, whose ``dense_weight()`` has zeros where Table I connects no map)."""
    if paper_named(net.features):
        return [(n, m) for n, m in net.features.named_children() if isinstance(m, (nn.Conv2d, SparseConv))]
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    return [(f"conv{i}", m) for i, m in enumerate(convs, start=1)]


def conv_weight(conv: nn.Module) -> Tensor:
    """A conv layer's kernels as (out, in, k, k), zeros where a sparse layer connects no input map."""
    return conv.dense_weight() if isinstance(conv, SparseConv) else conv.weight


def feature_stages(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of ``net.features`` whose outputs are shown, found by type: each activation (named by the conv it
    follows and what lies between, e.g. ``conv1 + BatchNorm2d + ReLU``) and each pooling layer (``pool1 (MaxPool2d)``);
    LeNet1998's by the paper's names."""
    if paper_named(net.features):
        return _paper_stages(net.features)
    return _stages(net.features, nn.Conv2d, "conv", tuple(POOLINGS.values()))


def hidden_stages(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The activation modules of ``net.classifier`` (the hidden units: 120 and 84 in the classic network), named by
    the linear layer they follow and what lies between, e.g. ``fc1 + ReLU``; LeNet1998's F6."""
    if paper_named(net.classifier):
        return _paper_stages(net.classifier)
    return _stages(net.classifier, nn.Linear, "fc")


def _paper_stages(modules: nn.Module) -> list[tuple[str, nn.Module]]:
    children = dict(modules.named_children())
    stages = []
    for name, module in children.items():
        if name.endswith("_f") and not isinstance(module, nn.Identity):
            stages.append((name.removesuffix("_f"), module))
        elif isinstance(module, nn.AvgPool2d) and isinstance(children.get(f"{name}_f"), nn.Identity):
            stages.append((name, module))  # plain average pooling in place of S2 or S4: no squashing follows
    return stages


def _stages(
    modules: nn.Module, layer: type[nn.Module], prefix: str, poolings: tuple[type[nn.Module], ...] = ()
) -> list[tuple[str, nn.Module]]:
    activations = tuple(ACTIVATIONS.values())  # LeNet5's
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


class StageReader:
    """Hooks left on a network for many forward passes, for a caller that reads the same stages pass after pass (the
    demo) without hooking and unhooking every module each time. Each call is one forward pass in eval mode and returns
    what ``run_network`` returns; one call at a time (the outputs land in the reader). The hooks fire on every pass
    of the network until ``close()`` removes them; the reader keeps one pass's outputs at most.

    The network is put in eval mode when the reader is made (and again if a call finds it in training mode)."""

    def __init__(self, net: nn.Module, watch: Sequence[nn.Module] = ()) -> None:
        self.net, self.count = net, len(watch)
        # One pass's tensors, overwritten by the next: each watched module's output, and under the key len(watch) the
        # input of the output layer (LeNet1998's RBF units, whose input is F6)
        self.outputs: dict[int, Tensor] = {}
        self.hooks = [
            m.register_forward_hook(lambda _m, _in, out, k=k: self.outputs.__setitem__(k, out.detach()))
            for k, m in enumerate(watch)
        ]
        last = net.output_layer
        self.hooks.append(
            last.register_forward_pre_hook(lambda _m, args: self.outputs.__setitem__(self.count, args[0].detach()))
        )
        if any(m.training for m in net.modules()):  # eval() walks and sets every module: made once, not per pass
            net.eval()

    def __call__(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        if self.net.training:
            self.net.eval()
        self.outputs.clear()  # what passes made without the reader left behind
        try:
            with torch.no_grad():
                logits = self.net(x)
            return logits, [self.outputs[k] for k in range(self.count)], self.outputs[self.count]
        finally:
            self.outputs.clear()

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()

    def __enter__(self) -> StageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_network(net: nn.Module, x: Tensor, watch: Sequence[nn.Module] = ()) -> tuple[Tensor, list[Tensor], Tensor]:
    """One forward pass in eval mode: the logits, the output of each module in ``watch`` (in that order) and the
    penultimate features (the input of ``net.output_layer``: LeNet-5's last linear layer, or LeNet1998's RBF units), all read
    by hooks on the real call."""
    with StageReader(net, watch) as read:
        return read(x)
