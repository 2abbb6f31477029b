import pytest
import torch
from torch import nn

from src.models import ACTIVATIONS, POOLINGS, LeNet5

EXPECTED_SHAPES = [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,), (120,), (84,), (10,)]


def layer_output_shapes(net: LeNet5, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Shapes after each conv, each pooling, the flatten and each linear layer (activations keep shape)."""
    shapes = []
    for layer in [*net.features, *net.classifier]:
        x = layer(x)
        if isinstance(layer, (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten, nn.Linear)):
            shapes.append(tuple(x.shape[1:]))
    return shapes


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_layer_shapes(activation, pooling):
    net = LeNet5(activation=activation, pooling=pooling)
    assert layer_output_shapes(net, torch.zeros(1, 1, 32, 32)) == EXPECTED_SHAPES
    assert net(torch.zeros(5, 1, 32, 32)).shape == (5, 10)


def test_parameter_count():
    assert sum(p.numel() for p in LeNet5().parameters()) == 61_706


def test_rgb_and_class_count():
    net = LeNet5(in_channels=3, num_classes=7)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("key,kwargs", [("activation", {"activation": "swish"}), ("pooling", {"pooling": "l2"}),
                                         ("init", {"init": "orthogonal"})])
def test_unknown_choice_lists_valid_ones(key, kwargs):
    with pytest.raises(ValueError) as err:
        LeNet5(**kwargs)
    message = str(err.value)
    assert f"model.{key}" in message and repr(next(iter(kwargs.values()))) in message
    if key == "activation":
        assert all(name in message for name in ("sigmoid", "tanh", "relu"))


def test_xavier_init_changes_weights_not_biases():
    torch.manual_seed(0)
    default = LeNet5(activation="sigmoid")
    torch.manual_seed(0)
    xavier = LeNet5(activation="sigmoid", init="xavier")
    w_default, w_xavier = default.classifier[0].weight, xavier.classifier[0].weight
    assert not torch.equal(w_default, w_xavier)
    assert torch.equal(default.classifier[0].bias, xavier.classifier[0].bias)  # d2l leaves biases as they are
    bound = (6 / (400 + 120)) ** 0.5  # xavier_uniform's bound for a 400 -> 120 layer
    assert w_xavier.abs().max() <= bound and w_xavier.abs().max() > 0.9 * bound
