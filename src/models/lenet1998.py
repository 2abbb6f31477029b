"""LeNet-5 as LeCun, Bottou, Bengio and Haffner built it: "Gradient-based learning applied to document recognition",
Proc. IEEE 86(11), 1998, section II.B (the network), Table I (C3's connections), Fig. 2 and 3, Appendix A (the
squashing function and the initialisation).

32x32 input -> C1 6@28x28 -> S2 6@14x14 -> C3 16@10x10 -> S4 16@5x5 -> C5 120 -> F6 84 -> 10 Euclidean RBF units.
60,000 trainable parameters and 340,908 connections, as the paper counts them (``layer_counts``).

Its forward returns ``-y``, minus each class's RBF penalty, so that everything that reads logits (argmax, accuracy,
softmax) reads the paper's model: the class predicted is the nearest bitmap, and with the MAP criterion of section
II.C the probability of class i is e^{-y_i} / (e^{-j} + sum_k e^{-y_k}), the rest going to a "rubbish" class of
constant penalty j (``rubbish_logit``; ``src.models.outputs`` adds it wherever a loss or a probability is taken).

Each of the paper's decisions can be undone on its own, for the ablations of docs/lecun1998.md: ``c3="full"`` (every
C3 map fed by every S2 map), ``subsampling="average"`` (plain 2x2 average pooling), ``squashing="tanh"`` (plain tanh
instead of 1.7159 tanh(2a/3)), ``output="linear"`` (a trainable linear layer, read with softmax and cross-entropy)
and ``init="sqrt_fan_in"`` (weights within 2.4/sqrt(F) instead of Appendix A's printed 2.4/F).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.core.settings import Rule, check, choice, is_number
from src.models.bitmaps import digit_bitmaps

# Table I: the S2 maps (rows of the table) that feed each of C3's 16 maps (its columns). The first six take three
# neighbouring maps, the next six four neighbouring ones, three take four non-neighbouring ones, the last all six:
# "to break the symmetry in the network" and keep the number of connections "within reasonable bounds".
TABLE_I: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip

# Appendix A: f(a) = A tanh(S a), A = 1.7159 and S = 2/3, so that f(1) = 1 and f(-1) = -1, the second derivative is
# largest at +-1, and the gain stays near 1 over the range the normalised inputs and the +-1 targets use.
SQUASH_AMPLITUDE, SQUASH_SLOPE = 1.7159, 2.0 / 3.0
# Appendix A: weights drawn uniformly in [-2.4/F, 2.4/F], F the fan-in of the unit the connection goes to, so that
# the weighted sums fall where the sigmoids are steepest. As printed, the bound shrinks as 1/F and C5's sums (F = 400)
# start near 0.03; `sqrt_fan_in` (2.4/sqrt(F), the 1/sqrt(F) scaling of LeCun et al.'s "Efficient BackProp", 1998)
# starts every layer's sums near the inputs' own size. docs/lecun1998.md measures both.
INIT_RANGE = 2.4
INITS = ("fan_in", "sqrt_fan_in")
# Section II.C leaves the rubbish class's penalty j unstated. 10.0: an F6 code as far from every bitmap as ten units
# of squared distance (fewer than three of the 84 units off by 2, i.e. of the wrong sign) is as likely rubbish as any
# digit, so a digit's own penalty keeps being pulled down until it is well inside that radius, and classes whose
# penalty already exceeds it by far are no longer pushed up (the constant's job in the paper).
RUBBISH_PENALTY = 10.0
# The paper's own counts (section II.B), for src.summary: (trainable parameters, connections) per layer.
PAPER_COUNTS = {
    "C1": (156, 122_304),
    "S2": (12, 5_880),
    "C3": (1_516, 151_600),
    "S4": (32, 2_000),
    "C5": (48_120, 48_120),
    "F6": (10_164, 10_164),
    "output": (0, 840),
}
C3_OPTIONS, SUBSAMPLINGS, SQUASHINGS, OUTPUTS = ("table_1", "full"), ("trainable", "average"), ("scaled_tanh", "tanh"), ("rbf", "linear")  # fmt: skip
INPUT_SIZE = 32

NETWORK_1998_RULES = [  # the `model` group's values for src.models.LeNet1998
    choice("model.c3", C3_OPTIONS),
    choice("model.subsampling", SUBSAMPLINGS),
    choice("model.squashing", SQUASHINGS),
    choice("model.output", OUTPUTS),
    choice("model.init", INITS),
    Rule("model.rubbish_penalty", lambda v: is_number(v) and v > 0, "must be a number > 0 (section II.C's j)"),
    Rule("model.input_size", lambda v: v == INPUT_SIZE, "must be 32: C5's 5x5 maps cover S4 exactly (data.pad=2)"),
    Rule("model.in_channels", lambda v: v == 1, "must be 1 (grey-level images)"),
    Rule("model.num_classes", lambda v: v == 10, "must be 10: the output layer holds the ten digits' bitmaps"),
]


def convolve(x: Tensor, weight: Tensor, bias: Tensor, k: int) -> Tensor:
    """A valid, stride-1 convolution as one matrix product over the input's unfolded 5x5 windows: the same sums as
    ``F.conv2d``, and on a CPU several times faster for one image at a time, the paper's updates (docs/lecun1998.md).
    A window the size of the whole input (C5 on S4's 5x5 maps) is a plain linear layer."""
    n, _, height, width = x.shape  # k a Python int: a traced shape (the TensorBoard graph) would be a tensor
    out = weight.shape[0]
    if height == k and width == k:
        return F.linear(x.flatten(1), weight.flatten(1), bias).view(n, out, 1, 1)
    windows = F.unfold(x, k)  # (n, in x k x k, positions)
    return (weight.flatten(1) @ windows + bias[:, None]).view(n, out, height - k + 1, width - k + 1)


class Convolution(nn.Conv2d):
    """C1 and C5: a plain 5x5 convolution (``nn.Conv2d``'s parameters), computed by ``convolve``."""

    def forward(self, x: Tensor) -> Tensor:
        return convolve(x, self.weight, self.bias, self.kernel_size[0])


class Squash(nn.Module):
    """f(a) = A tanh(S a) (Appendix A); A = 1, S = 1 is plain tanh."""

    def __init__(self, amplitude: float = SQUASH_AMPLITUDE, slope: float = SQUASH_SLOPE) -> None:
        super().__init__()
        self.amplitude, self.slope = amplitude, slope

    def forward(self, a: Tensor) -> Tensor:
        return self.amplitude * torch.tanh(self.slope * a)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4f}"


class Subsampling(nn.Module):
    """S2 and S4 (section II.B): each unit sums a 2x2 block of its map, multiplies the sum by the map's trainable
    coefficient and adds the map's trainable bias (the squashing follows): two parameters per map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))

    def forward(self, x: Tensor) -> Tensor:
        block_sums = F.avg_pool2d(x, 2) * 4
        return block_sums * self.weight[:, None, None] + self.bias[:, None, None]

    def fan_in(self) -> Tensor:
        return torch.full_like(self.weight, 4.0)


class SparseConv(nn.Module):
    """C3 (section II.B, Table I): 5x5 convolutions where output map m sees only the input maps ``connections[m]``.
    One 5x5 kernel per (input, output) pair that Table I connects, packed (1,500 weights and 16 biases, not 2,416):
    each forward scatters them into a dense kernel whose other entries stay zero."""

    def __init__(self, connections: Sequence[Sequence[int]], in_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.connections = tuple(tuple(c) for c in connections)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, len(connections), kernel_size
        pairs = [(out, inp) for out, inputs in enumerate(self.connections) for inp in inputs]
        self.register_buffer("pairs", torch.tensor(pairs, dtype=torch.long).T, persistent=False)
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(self.out_channels))

    def dense_weight(self) -> Tensor:
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels, self.in_channels, k, k)
        return dense.index_put((self.pairs[0], self.pairs[1]), self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return convolve(x, self.dense_weight(), self.bias, self.kernel_size)

    def fan_in(self) -> Tensor:
        """Each output map's fan-in: 25 per input map it sees."""
        return torch.tensor([len(c) * self.kernel_size**2 for c in self.connections], dtype=torch.float)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, connections=Table I"


class EuclideanRBF(nn.Module):
    """The output layer (section II.B, eq. 7): y_i = sum_j (x_j - w_ij)^2, each w_i a class's fixed 7x12 bitmap of
    +-1 (``src.models.bitmaps``; a buffer, not trained). Returns the penalties y, (N, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("centers", digit_bitmaps())

    def forward(self, x: Tensor) -> Tensor:
        # the differences themselves, not |x|^2 - 2 x.w + |w|^2: that would lose a near distance's digits to cancellation
        return (x[:, None, :] - self.centers).square().sum(-1)


class NegativePenalty(nn.Module):
    """-y: the RBF penalties as logits, larger for the more likely class (p_i proportional to e^{-y_i})."""

    def forward(self, y: Tensor) -> Tensor:
        return -y


class LeNet1998(nn.Module):
    """LeNet-5 of LeCun et al. (1998), its layers named as the paper names them: ``features`` holds C1, S2, C3, S4
    and C5 with their squashing functions, ``classifier`` holds F6 and the output layer. See the module's docstring.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        c3: str = "table_1",
        subsampling: str = "trainable",
        squashing: str = "scaled_tanh",
        output: str = "rbf",
        rubbish_penalty: float = RUBBISH_PENALTY,
        input_size: int = INPUT_SIZE,
        init: str = "fan_in",
    ) -> None:
        super().__init__()
        arguments = dict(in_channels=in_channels, num_classes=num_classes, c3=c3, subsampling=subsampling,
                         squashing=squashing, output=output, rubbish_penalty=rubbish_penalty, input_size=input_size,
                         init=init)  # fmt: skip
        check({"model": arguments}, NETWORK_1998_RULES)
        self.input_size, self.in_channels, self.num_classes = input_size, in_channels, num_classes
        self.init = init
        squash = (lambda: Squash()) if squashing == "scaled_tanh" else (lambda: Squash(1.0, 1.0))
        subsample = (lambda c: Subsampling(c)) if subsampling == "trainable" else (lambda c: nn.AvgPool2d(2))
        self.features = nn.Sequential(
            OrderedDict(
                C1=Convolution(in_channels, 6, 5),  # 6 maps 28x28, 5x5 receptive fields
                C1_f=squash(),
                S2=subsample(6),  # section II.B: "S2 ... 6 feature maps of size 14x14"; squashed below
                S2_f=squash() if subsampling == "trainable" else nn.Identity(),
                C3=SparseConv(TABLE_I, 6) if c3 == "table_1" else Convolution(6, 16, 5),  # 16 maps 10x10, Table I
                C3_f=squash(),
                S4=subsample(16),
                S4_f=squash() if subsampling == "trainable" else nn.Identity(),
                C5=Convolution(16, 120, 5),  # 120 maps 1x1: "a convolutional layer", full over S4's 16 maps
                C5_f=squash(),
                flatten=nn.Flatten(),
            )
        )
        head = (
            [("output", EuclideanRBF()), ("negative", NegativePenalty())]
            if output == "rbf"
            else [("output", nn.Linear(84, num_classes))]
        )
        self.classifier = nn.Sequential(OrderedDict([("F6", nn.Linear(120, 84)), ("F6_f", squash()), *head]))
        # section II.C: the rubbish class's constant penalty j, as a logit; a linear head has no rubbish class
        self.rubbish_logit: float | None = -float(rubbish_penalty) if output == "rbf" else None
        self.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))

    @property
    def output_layer(self) -> nn.Module:
        """The layer that reads F6: the RBF units (or the linear layer that replaces them)."""
        return self.classifier.output

    def reset_parameters(self) -> None:
        """Appendix A: every weight and bias uniform in [-2.4/F, 2.4/F], F the fan-in of the unit it feeds
        (``init="sqrt_fan_in"``: in [-2.4/sqrt(F), 2.4/sqrt(F)])."""
        scale = (lambda fan_in: fan_in) if self.init == "fan_in" else (lambda fan_in: fan_in**0.5)
        with torch.no_grad():
            for module in [*self.features, *self.classifier]:
                if isinstance(module, nn.Conv2d):  # each output unit's bound, from its fan-in
                    bound = torch.full((module.out_channels,), INIT_RANGE / scale(math.prod(module.weight.shape[1:])))
                elif isinstance(module, nn.Linear):
                    bound = torch.full((module.out_features,), INIT_RANGE / scale(module.in_features))
                elif isinstance(module, (SparseConv, Subsampling)):
                    bound = INIT_RANGE / scale(module.fan_in())
                else:
                    continue
                # a SparseConv packs one kernel per connection: each takes the bound of the map it feeds
                per_weight = bound[module.pairs[0]] if isinstance(module, SparseConv) else bound
                for tensor, limit in ((module.weight, per_weight), (module.bias, bound)):
                    tensor.copy_((torch.rand_like(tensor) * 2 - 1) * limit.view(-1, *[1] * (tensor.dim() - 1)))


def layer_counts(net: nn.Module) -> dict[str, tuple[int, int]]:
    """(trainable parameters, connections) of each layer of a LeNet1998, counted as the paper counts them: a
    connection joins an input (or the bias) to a unit, shared weights counted once as parameters and once per use as
    connections. Read from one forward pass of a blank image (each layer's output size)."""
    sizes: dict[str, int] = {}
    layers = {name: m for name, m in [*net.features.named_children(), *net.classifier.named_children()] if name in PAPER_COUNTS}  # fmt: skip
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: sizes.__setitem__(n, out[0].numel())) for n, m in layers.items()]  # fmt: skip
    try:
        with torch.no_grad():
            net(torch.zeros(1, net.in_channels, net.input_size, net.input_size))
    finally:
        for hook in hooks:
            hook.remove()
    counts = {}
    for name, module in layers.items():
        params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        if isinstance(module, EuclideanRBF):  # each unit reads the 84 F6 outputs, with fixed weights
            connections = module.centers.numel()
        elif isinstance(module, (Subsampling, nn.AvgPool2d)):  # each unit: four inputs and, if trainable, a bias
            connections = sizes[name] * (5 if isinstance(module, Subsampling) else 4)
        elif isinstance(module, (nn.Conv2d, SparseConv)):  # every parameter used once at each output position
            connections = sizes[name] // module.out_channels * params
        else:  # a linear layer: one connection per parameter
            connections = params
        counts[name] = (params, connections)
    return counts
