"""LeNet-5 as a plain ``nn.Module``: the network the tutorials build, with its recipe knobs exposed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}
POOLINGS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
INITS = ("default", "xavier", "kaiming")


def check_choice(key: str, value: object, valid: tuple[str, ...] | list[str] | dict) -> None:
    """Raise a ``ValueError`` naming the key, the bad value and the valid ones."""
    if value not in valid:
        raise ValueError(f"{key}={value!r} is not valid; choose one of: {', '.join(valid)}")


class LeNet5(nn.Module):
    """conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 400 -> 120 -> 84 -> num_classes, for 32x32 inputs."""

    def __init__(
        self,
        activation: str = "relu",
        pooling: str = "max",
        in_channels: int = 1,
        num_classes: int = 10,
        init: str = "default",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        check_choice("model.activation", activation, ACTIVATIONS)
        check_choice("model.pooling", pooling, POOLINGS)
        check_choice("model.init", init, INITS)
        act, pool = ACTIVATIONS[activation], POOLINGS[pooling]
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5), act(), pool(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), act(), pool(kernel_size=2, stride=2),
            nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), act(),
            nn.Linear(120, 84), act(),
            nn.Linear(84, num_classes),
        )  # fmt: skip
        if init != "default":
            self.apply(_INIT_FNS[init])
        # NHWC layout: the same arithmetic, but oneDNN's conv and pooling kernels run faster on it (docs/speed.md)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.contiguous(memory_format=self.memory_format)))


def lenet5_from_config(model: dict) -> LeNet5:
    """The network for a ``model`` config group; ``compile`` there is for the Lightning wrapper, not the network."""
    return LeNet5(**{k: v for k, v in model.items() if k != "compile"})


def _xavier(m: nn.Module) -> None:
    # d2l initialises only the weights of conv and linear layers; biases keep PyTorch's default.
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)


def _kaiming(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(m.bias)


_INIT_FNS = {"xavier": _xavier, "kaiming": _kaiming}
