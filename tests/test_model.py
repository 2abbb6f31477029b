import pytest
import torch
from torch import nn

from src.models import ACTIVATIONS, POOLINGS, LeNet5
from tests.helpers import assert_orthonormal_rows

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


@pytest.mark.parametrize(
    "key,kwargs",
    [("activation", {"activation": "swish"}), ("pooling", {"pooling": "l2"}), ("init", {"init": "uniform"})],
)
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


def test_orthogonal_init_gives_every_layer_orthonormal_rows_and_zero_biases():
    torch.manual_seed(0)
    assert_orthonormal_rows(LeNet5(init="orthogonal"))


# -- d2l's variations: each builds, trains a step, and has the parameters stated ----------------------------------
@pytest.mark.parametrize(
    "options,params",
    [
        ({}, 61_706),
        # conv and hidden linear layers lose their bias (the norm's shift replaces it) and gain 2 per channel
        ({"batch_norm": True}, 61_706 - (6 + 16 + 120 + 84) + 2 * (6 + 16 + 120 + 84)),
        ({"dropout": 0.3}, 61_706),
        (
            {"channels": [16, 32], "hidden": [64, 64]},
            (25 * 16 + 16) + (16 * 25 * 32 + 32) + (800 * 64 + 64) + (64 * 64 + 64) + (64 * 10 + 10),
        ),
        ({"kernel_size": 3}, (9 * 6 + 6) + (6 * 9 * 16 + 16) + (16 * 6 * 6 * 120 + 120) + (120 * 84 + 84) + 850),
        # one conv layer: 32 -> 28 -> 14, so 6 x 14 x 14 into fc1
        ({"channels": [6]}, (25 * 6 + 6) + (6 * 14 * 14 * 120 + 120) + (120 * 84 + 84) + 850),
        # three conv layers with padding 2 (each conv keeps the side): 32 -> 16 -> 8 -> 4, so 32 x 4 x 4 into fc1
        (
            {"channels": [6, 16, 32], "padding": 2},
            (25 * 6 + 6) + (6 * 25 * 16 + 16) + (16 * 25 * 32 + 32) + (512 * 120 + 120) + (120 * 84 + 84) + 850,
        ),
        ({"hidden": []}, (25 * 6 + 6) + (6 * 25 * 16 + 16) + (400 * 10 + 10)),  # one fully connected layer
        ({"hidden": [120]}, (25 * 6 + 6) + (6 * 25 * 16 + 16) + (400 * 120 + 120) + (120 * 10 + 10)),
    ],
    ids=["classic", "batch_norm", "dropout", "sizes", "kernel_size", "one_conv", "three_convs", "one_fc", "two_fc"],
)
def test_model_options_build_train_a_step_and_count_their_parameters(options, params):
    torch.manual_seed(0)
    net = LeNet5(**options)
    assert sum(p.numel() for p in net.parameters()) == params
    x, y = torch.randn(8, 1, 32, 32), torch.arange(8)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert net.eval()(x).shape == (8, 10)


def test_batch_norm_and_dropout_sit_where_d2l_puts_them():
    net = LeNet5(batch_norm=True, dropout=0.5, activation="sigmoid")
    kinds = [type(m).__name__ for m in [*net.features, *net.classifier]]
    assert kinds == [
        "Conv2d",
        "BatchNorm2d",
        "Sigmoid",
        "MaxPool2d",
        "Conv2d",
        "BatchNorm2d",
        "Sigmoid",
        "MaxPool2d",
        "Flatten",
        "Linear",
        "BatchNorm1d",
        "Sigmoid",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "Sigmoid",
        "Dropout",
        "Linear",
    ]
    x = torch.randn(4, 1, 32, 32)
    net.eval()
    assert torch.equal(net(x), net(x))  # dropout only while training


def test_a_kernel_too_large_for_the_input_is_refused():
    with pytest.raises(ValueError, match="model.kernel_size=11"):
        LeNet5(kernel_size=11)


@pytest.mark.parametrize(
    "options,sides,vanishes,limit",
    [
        ({"channels": [6, 16, 32]}, "32 -> 28 -> 14 -> 10 -> 5 -> 1 -> 0", "pool3", 2),
        ({"channels": [6, 16, 32], "kernel_size": 7}, "32 -> 26 -> 13 -> 7 -> 3 -> -3", "conv3", 2),
        (
            {"channels": [4] * 6, "padding": 2},
            "32 -> 32 -> 16 -> 16 -> 8 -> 8 -> 4 -> 4 -> 2 -> 2 -> 1 -> 1 -> 0",
            "pool6",
            5,
        ),
        ({"channels": [6, 16], "input_size": 12}, "12 -> 8 -> 4 -> 0", "conv2", 1),
    ],
)
def test_more_conv_stages_than_the_image_has_pixels_for_are_refused_with_the_sizes(options, sides, vanishes, limit):
    with pytest.raises(ValueError) as err:
        LeNet5(**options)
    message = str(err.value)
    assert f"shrinks {sides} and vanishes at {vanishes}" in message
    assert f"at most {limit} conv layer" in message


def test_the_classic_network_is_the_default_layer_for_layer():
    """The default is the tutorials' LeNet-5, layer for layer: 6@5x5 and 16@5x5 convolutions with 2x2 pooling, then
    400 -> 120 -> 84 -> 10, 61,706 parameters; with the state_dict keys checkpoints have always had."""
    classic = LeNet5(activation="relu", pooling="max")
    layers = [
        (type(m).__name__, [tuple(p.shape) for p in m.parameters(recurse=False)])
        for m in classic.modules()
        if not isinstance(m, (nn.Sequential, LeNet5))
    ]
    relu, pool = ("ReLU", []), ("MaxPool2d", [])
    assert layers == [
        ("Conv2d", [(6, 1, 5, 5), (6,)]), relu, pool,
        ("Conv2d", [(16, 6, 5, 5), (16,)]), relu, pool,
        ("Flatten", []),
        ("Linear", [(120, 400), (120,)]), relu,
        ("Linear", [(84, 120), (84,)]), relu,
        ("Linear", [(10, 84), (10,)]),
    ]  # fmt: skip
    assert sum(p.numel() for p in classic.parameters()) == 61_706
    assert classic(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    assert list(classic.state_dict()) == [
        *(f"features.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")),
        *(f"classifier.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")),
    ]  # the keys of checkpoints written before the layer counts became options
