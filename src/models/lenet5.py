"""LeNet-5 as a plain ``nn.Module``: the network the tutorials build, with its recipe knobs exposed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from src.checks import check_choice
from src.errors import CheckpointError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}
POOLINGS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
INITS = ("default", "xavier", "kaiming")
INPUT_SIZE = 32  # MNIST's 28x28 padded by 2, as LeNet-5 was built for


def conv_output_side(kernel_size: int, input_size: int = INPUT_SIZE) -> int:
    """The feature maps' side after conv, pool, conv, pool (5 for the classic 5x5 kernels on 32x32 inputs)."""
    return ((input_size - kernel_size + 1) // 2 - kernel_size + 1) // 2


class LeNet5(nn.Module):
    """conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 400 -> 120 -> 84 -> num_classes, for 32x32 inputs.

    The defaults are the classic network (61,706 parameters). The options d2l's later chapters and exercises vary:
    ``batch_norm`` (d2l's "LeNet with batch normalization": after each conv and hidden linear layer, before the
    activation), ``dropout`` (after each hidden linear layer's activation), ``channels`` (the two convs' output
    channels), ``kernel_size`` (both convs) and ``hidden`` (the two hidden linear layers' widths). ``input_size``
    is the images' side: 32 for MNIST padded by 2, 28 unpadded (d2l's batch-norm LeNet); conf/model/lenet5.yaml sets
    it from ``data.pad``.
    """

    def __init__(
        self,
        activation: str = "relu",
        pooling: str = "max",
        in_channels: int = 1,
        num_classes: int = 10,
        init: str = "default",
        channels_last: bool = False,
        batch_norm: bool = False,
        dropout: float = 0.0,
        channels: Sequence[int] = (6, 16),
        kernel_size: int = 5,
        hidden: Sequence[int] = (120, 84),
        input_size: int = INPUT_SIZE,
    ) -> None:
        super().__init__()
        check_choice("model.activation", activation, ACTIVATIONS)
        check_choice("model.pooling", pooling, POOLINGS)
        check_choice("model.init", init, INITS)
        act, pool = ACTIVATIONS[activation], POOLINGS[pooling]
        c1, c2 = channels
        h1, h2 = hidden
        self.input_size = input_size
        side = conv_output_side(kernel_size, input_size)
        if side < 1:
            raise ValueError(f"model.kernel_size={kernel_size} is too large for {input_size}x{input_size} inputs")
        # bias=False before batch norm: its shift makes a bias redundant (d2l keeps it; it changes nothing learned).
        norm2d = (lambda c: [nn.BatchNorm2d(c)]) if batch_norm else (lambda c: [])
        norm1d = (lambda c: [nn.BatchNorm1d(c)]) if batch_norm else (lambda c: [])
        drop = (lambda: [nn.Dropout(dropout)]) if dropout else (lambda: [])
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size, bias=not batch_norm),
            *norm2d(c1),
            act(),
            pool(kernel_size=2, stride=2),
            nn.Conv2d(c1, c2, kernel_size, bias=not batch_norm),
            *norm2d(c2),
            act(),
            pool(kernel_size=2, stride=2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * side * side, h1, bias=not batch_norm),
            *norm1d(h1),
            act(),
            *drop(),
            nn.Linear(h1, h2, bias=not batch_norm),
            *norm1d(h2),
            act(),
            *drop(),
            nn.Linear(h2, num_classes),
        )
        if init != "default":
            self.apply(_INIT_FNS[init])
        # NHWC layout: the same arithmetic, but oneDNN's conv and pooling kernels run faster on it (docs/speed.md)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.contiguous(memory_format=self.memory_format)))


TARGET = "src.models.LeNet5"  # conf/model/lenet5.yaml's _target_


def build_network(model: Mapping[str, Any]) -> LeNet5:
    """The network a saved ``model`` config describes (the copy a checkpoint or a run folder keeps of
    conf/model/lenet5.yaml, resolved), built as ``hydra.utils.instantiate`` builds it from a composed config. The
    ``_target_`` must be LeNet5's: a file naming any other callable is refused, never imported."""
    args = dict(model)
    if (target := args.pop("_target_", TARGET)) != TARGET:
        raise CheckpointError(f"model._target_={target!r}: this project builds only {TARGET}")
    args.pop("compile", None)  # written inside the model group by versions before it became the top-level `compile`
    return LeNet5(**args)


def _xavier(m: nn.Module) -> None:
    # d2l initialises only the weights of conv and linear layers; biases keep PyTorch's default.
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)


def _kaiming(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


_INIT_FNS = {"xavier": _xavier, "kaiming": _kaiming}
