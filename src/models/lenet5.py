"""LeNet-5 as a plain ``nn.Module``: the network the tutorials build, with its recipe knobs exposed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from src.core.settings import Rule, check, choice, flag, is_int, is_number, positive_integer

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}
POOLINGS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
INITS = ("default", "xavier", "kaiming", "orthogonal")
INPUT_SIZE = 32  # MNIST's 28x28 padded by 2, as LeNet-5 was built for


NETWORK_RULES = [  # the `model` group's values: checked by src.train before any work, and by LeNet5 itself
    choice("model.activation", ACTIVATIONS),
    choice("model.pooling", POOLINGS),
    choice("model.init", INITS),
    positive_integer("model.in_channels"),
    Rule("model.num_classes", lambda v: is_int(v) and v > 1, "must be an integer > 1"),
    flag("model.batch_norm"),
    Rule("model.dropout", lambda v: is_number(v) and 0 <= v < 1, "must be a number in [0, 1)"),
    Rule(
        "model.channels",
        lambda v: len(v) >= 1 and all(is_int(c) and c > 0 for c in v),
        "must be a list of one or more integers > 0, one conv layer each, e.g. [6, 16]",
    ),
    Rule(
        "model.hidden",
        lambda v: all(is_int(c) and c > 0 for c in v),
        "must be a list of integers > 0, one hidden linear layer each, e.g. [120, 84] ([]: none)",
    ),
    Rule("model.padding", lambda v: is_int(v) and v >= 0, "must be an integer >= 0"),
]


def network_shape_problems(cfg: DictConfig) -> list[str]:
    """Whether the conv stages fit the input: ``model.kernel_size`` within the largest window the input allows, and
    no more conv layers than its side can take (the sides they would reach, and the limit)."""
    side = OmegaConf.select(cfg, "model.input_size", default=INPUT_SIZE)
    side = side if is_int(side) and side > 0 else INPUT_SIZE  # a bad data.pad is named by its own rule
    padding = OmegaConf.select(cfg, "model.padding", default=0)
    padding = padding if is_int(padding) and padding >= 0 else 0
    largest = max((k for k in range(1, side + 2 * padding + 1) if max_conv_layers(k, side, padding) > 0), default=0)
    kernel_rule = Rule(
        "model.kernel_size",
        lambda v: is_int(v) and 0 < v <= largest,
        f"must be an integer in 1..{largest} (the feature maps of a {side}x{side} input must not vanish)",
    )
    if (problem := kernel_rule.problem(cfg)) is not None:
        return [problem]
    channels, kernel = OmegaConf.select(cfg, "model.channels"), OmegaConf.select(cfg, "model.kernel_size", default=5)
    if channels and all(is_int(c) and c > 0 for c in channels):
        if (problem := size_problem(list(channels), kernel, side, padding)) is not None:
            return [problem]
    return []


def feature_sides(kernel_size: int, input_size: int = INPUT_SIZE, conv_layers: int = 2, padding: int = 0) -> list[int]:
    """The feature maps' side through the conv stages, starting with the input's: after each conv, then after its 2x2
    pooling ([32, 28, 14, 10, 5] for the classic two 5x5 convs on 32x32 inputs). It stops at the first side under 1:
    the network cannot be built."""
    sides = [input_size]
    for _ in range(conv_layers):
        for side in (sides[-1] + 2 * padding - kernel_size + 1, (sides[-1] + 2 * padding - kernel_size + 1) // 2):
            sides.append(side)
            if side < 1:
                return sides
    return sides


def max_conv_layers(kernel_size: int, input_size: int = INPUT_SIZE, padding: int = 0) -> int:
    """The most conv + pooling stages whose feature maps keep at least one pixel (at most 16: 2^16 > any input)."""
    return next(n for n in range(17) if n == 16 or feature_sides(kernel_size, input_size, n + 1, padding)[-1] < 1)


def size_problem(channels: Sequence[int], kernel_size: int, input_size: int, padding: int) -> str | None:
    """Why this many conv layers cannot be built on this input (the sizes it would reach and the limit), or None."""
    sides = feature_sides(kernel_size, input_size, len(channels), padding)
    if sides[-1] >= 1:
        return None
    stage = len(sides) - 1  # conv1, pool1, conv2, pool2, ...: the stage where the maps vanish
    where = f"{'conv' if stage % 2 else 'pool'}{(stage + 1) // 2}"
    limit = max_conv_layers(kernel_size, input_size, padding)
    return (
        f"model.channels={list(channels)} with model.kernel_size={kernel_size}, model.padding={padding}: a "
        f"{input_size}x{input_size} input shrinks {' -> '.join(map(str, sides))} and vanishes at {where}; at most "
        f"{limit} conv layer{'s' if limit != 1 else ''} fit{'s' if limit == 1 else ''} these sizes (fewer channels "
        f"entries, a smaller model.kernel_size or a larger model.padding)"
    )


class LeNet5(nn.Module):
    """conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 400 -> 120 -> 84 -> num_classes, for 32x32 inputs.

    The defaults are the classic network (61,706 parameters). The options d2l's later chapters and exercises vary:
    ``batch_norm`` (d2l's "LeNet with batch normalization": after each conv and hidden linear layer, before the
    activation), ``dropout`` (after each hidden linear layer's activation), ``channels`` (one conv + activation +
    2x2 pooling stage per entry, its output channels), ``kernel_size`` and ``padding`` (every conv's), and ``hidden``
    (one hidden linear layer per entry, its width; ``[]``: the features go straight into the output layer).
    ``input_size`` is the images' side: 32 for MNIST padded by 2, 28 unpadded (d2l's batch-norm LeNet);
    conf/model/lenet5.yaml sets it from ``data.pad``.
    """

    def __init__(  # the layers' options in the network's order: conv stages, then the hidden linear layers
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (6, 16),
        kernel_size: int = 5,
        padding: int = 0,
        activation: str = "relu",
        pooling: str = "max",
        hidden: Sequence[int] = (120, 84),
        num_classes: int = 10,
        batch_norm: bool = False,
        dropout: float = 0.0,
        init: str = "default",
        input_size: int = INPUT_SIZE,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        arguments = dict(activation=activation, pooling=pooling, init=init, in_channels=in_channels,
                         num_classes=num_classes, batch_norm=batch_norm, dropout=dropout, channels=list(channels),
                         hidden=list(hidden), padding=padding, kernel_size=kernel_size, input_size=input_size)  # fmt: skip
        check({"model": arguments}, NETWORK_RULES, network_shape_problems)
        act, pool = ACTIVATIONS[activation], POOLINGS[pooling]
        self.input_size, self.in_channels, self.num_classes = input_size, in_channels, num_classes
        side = feature_sides(kernel_size, input_size, len(channels), padding)[-1]
        # bias=False before batch norm: its shift makes a bias redundant (d2l keeps it; it changes nothing learned).
        norm2d = (lambda c: [nn.BatchNorm2d(c)]) if batch_norm else (lambda c: [])
        norm1d = (lambda c: [nn.BatchNorm1d(c)]) if batch_norm else (lambda c: [])
        drop = (lambda: [nn.Dropout(dropout)]) if dropout else (lambda: [])
        convs, widths = [in_channels, *channels], [channels[-1] * side * side, *hidden]
        self.features = nn.Sequential(
            *(
                layer
                for c_in, c_out in zip(convs, convs[1:])
                for layer in (
                    nn.Conv2d(c_in, c_out, kernel_size, padding=padding, bias=not batch_norm),
                    *norm2d(c_out),
                    act(),
                    pool(kernel_size=2, stride=2),
                )
            ),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            *(
                layer
                for n_in, n_out in zip(widths, widths[1:])
                for layer in (nn.Linear(n_in, n_out, bias=not batch_norm), *norm1d(n_out), act(), *drop())
            ),
            nn.Linear(widths[-1], num_classes),
        )
        if init != "default":
            self.apply(_INIT_FNS[init])
        # NHWC layout: the same arithmetic, but oneDNN's conv and pooling kernels run faster on it (docs/speed.md)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.contiguous(memory_format=self.memory_format)))

    @property
    def output_layer(self) -> nn.Module:
        """The linear layer that computes the class scores."""
        return self.classifier[-1]


def _xavier(m: nn.Module) -> None:
    # d2l initialises only the weights of conv and linear layers; biases keep PyTorch's default.
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)


def _kaiming(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _orthogonal(m: nn.Module) -> None:
    # Each weight as the matrix of its units (a conv's filters flattened) with orthonormal rows (columns where a layer
    # has more units than inputs), the shape Muon (experiment=fast_mnist) gives its updates (Saxe et al. 2014, "Exact
    # solutions to the nonlinear dynamics of learning in deep linear neural networks").
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.orthogonal_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


_INIT_FNS = {"xavier": _xavier, "kaiming": _kaiming, "orthogonal": _orthogonal}
