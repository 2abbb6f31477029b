"""LeNet-5 as LeCun et al. (1998) built it: the counts, Table I, the squashing function, the fixed bitmaps, the MAP
criterion, the initialisation and the input scaling, checked against the paper's own figures and by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from src.core.errors import ConfigError
from src.data import MNISTDataModule
from src.data.preprocessing import Preprocessing
from src.models import LeNet1998, build_network, outputs
from src.models.lenet1998 import (
    PAPER_COUNTS,
    Convolution,
    EuclideanRBF,
    SparseConv,
    Squash,
    Subsampling,
    layer_counts,
)
from src.training.rules import check_training_config
from tests.helpers import read_scalars, run_module

# Table I of the paper as printed: row i is S2's map i, column j C3's map j, X where C3's map j reads S2's map i.
PRINTED_TABLE_I = """
X...XXX..XXXX.X
XX...XXX..XXXX.
XXX...XXX..X.XX
.XXX..XXXX..X.X
..XXX..XXXX.XX.
...XXX..XXXX.XX
"""


def printed_table() -> torch.Tensor:
    """(16 C3 maps, 6 S2 maps): True where connected. The printed table has 16 columns; the last (all six) is
    left implicit in the string above and appended here."""
    rows = [line for line in PRINTED_TABLE_I.strip().splitlines()]
    table = torch.tensor([[c == "X" for c in row] for row in rows])  # (6, 15)
    return torch.cat([table, torch.ones(6, 1, dtype=torch.bool)], dim=1).T


def test_every_layer_has_the_papers_parameters_and_connections():
    net = LeNet1998()
    assert layer_counts(net) == PAPER_COUNTS
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 60_000
    assert sum(connections for _, connections in layer_counts(net).values()) == 340_908


def test_each_c3_map_reads_only_the_s2_maps_table_i_gives():
    torch.manual_seed(0)
    c3 = LeNet1998().features.C3
    assert isinstance(c3, SparseConv)
    connected = c3.dense_weight().abs().sum(dim=(2, 3)) > 0  # (16, 6)
    assert torch.equal(connected, printed_table())
    assert c3.weight.numel() + c3.bias.numel() == 1_516
    # and by what the maps respond to: changing an S2 map moves exactly the C3 maps Table I connects it to
    s2 = torch.randn(1, 6, 14, 14)
    for s2_map in range(6):
        changed = s2.clone()
        changed[0, s2_map] += 1.0
        moved = (c3(changed) - c3(s2)).abs().sum(dim=(0, 2, 3)) > 0
        assert torch.equal(moved, printed_table()[:, s2_map])


def test_every_layer_up_to_f6_is_squashed_by_1_7159_tanh_of_two_thirds_a():
    net = LeNet1998()
    squashes = [m for m in [*net.features, *net.classifier] if isinstance(m, Squash)]
    assert len(squashes) == 6  # C1, S2, C3, S4, C5, F6
    a = torch.linspace(-3, 3, 61)
    for squash in squashes:
        assert torch.allclose(squash(a), 1.7159 * torch.tanh(2 * a / 3))
    # Appendix A's reasons: f(1) = 1, f(-1) = -1
    assert squashes[0](torch.tensor([1.0, -1.0])).tolist() == pytest.approx([1.0, -1.0], abs=1e-4)
    plain = LeNet1998(squashing="tanh")
    assert torch.allclose(plain.features.C1_f(a), torch.tanh(a))


def test_the_output_layer_holds_ten_fixed_distinct_bitmaps_of_plus_and_minus_one():
    net = LeNet1998()
    rbf = net.classifier.output
    assert isinstance(rbf, EuclideanRBF)
    centers = rbf.centers.clone()
    assert centers.shape == (10, 84) and set(centers.unique().tolist()) == {-1.0, 1.0}
    assert not any(p is rbf.centers for p in net.parameters())  # a buffer: no optimizer sees it
    assert "classifier.output.centers" in net.state_dict()  # kept in every checkpoint
    differing = (centers[:, None, :] != centers[None, :, :]).sum(-1) + torch.eye(10, dtype=torch.long) * 84
    assert int(differing.min()) >= 8
    # a training step leaves them as they were
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = outputs.loss(net, net(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    assert torch.equal(rbf.centers, centers)


def test_the_map_loss_and_probabilities_are_the_papers_by_hand():
    torch.manual_seed(1)
    net = LeNet1998(rubbish_penalty=10.0).eval()
    x, label = torch.randn(1, 1, 32, 32), 3
    f6 = net.classifier.F6_f(net.classifier.F6(net.features(x)))[0].tolist()
    bitmaps = net.classifier.output.centers.tolist()
    y = [sum((f6[j] - bitmaps[i][j]) ** 2 for j in range(84)) for i in range(10)]
    j = 10.0
    expected = y[label] + math.log(math.exp(-j) + sum(math.exp(-yi) for yi in y))
    logits = net(x)
    assert logits[0].tolist() == pytest.approx([-yi for yi in y], rel=1e-5)
    assert outputs.loss(net, logits, torch.tensor([label])).item() == pytest.approx(expected, rel=1e-5)
    p = outputs.probabilities(net, logits)[0].tolist()
    denominator = math.exp(-j) + sum(math.exp(-yi) for yi in y)
    assert p == pytest.approx([math.exp(-yi) / denominator for yi in y], rel=1e-4, abs=1e-12)
    assert sum(p) < 1  # the rest is the rubbish class's
    linear = LeNet1998(output="linear")
    assert linear.rubbish_logit is None  # a softmax head: plain cross-entropy
    logits = linear(x)
    assert torch.allclose(
        outputs.loss(linear, logits, torch.tensor([label])), F.cross_entropy(logits, torch.tensor([label]))
    )


@pytest.mark.parametrize("init, scale", [("fan_in", lambda f: f), ("sqrt_fan_in", lambda f: f**0.5)])
def test_weights_start_uniform_within_2_4_over_the_fan_in_or_its_square_root(init, scale):
    torch.manual_seed(2)
    net = LeNet1998(init=init)
    fan_ins = {"C1": 25, "S2": 4, "C5": 400, "F6": 120}
    modules = dict([*net.features.named_children(), *net.classifier.named_children()])
    for name, fan_in in fan_ins.items():
        bound = 2.4 / scale(fan_in)
        for p in modules[name].parameters():
            assert float(p.abs().max()) <= bound
        assert float(modules[name].weight.abs().max()) > 0.5 * bound  # spread over the range, not squeezed
    c3 = modules["C3"]
    per_kernel = c3.weight.abs().amax(dim=(1, 2))
    bounds = 2.4 / scale(c3.fan_in()[c3.pairs[0]])  # 75, 100 or 150: 25 per S2 map the kernel's C3 map reads
    assert bool((per_kernel <= bounds).all())
    assert float(per_kernel.max()) > 0.5 * float(bounds.max())


def test_an_unknown_initialisation_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"model\.init.*'glorot'.*fan_in.*sqrt_fan_in"):
        LeNet1998(init="glorot")


def test_pixels_are_scaled_to_the_papers_background_and_ink(data_dir):
    prep = Preprocessing.from_range(2, -0.1, 1.175)
    x = prep(torch.tensor([[[0] * 28] * 27 + [[255] * 28]], dtype=torch.uint8))
    assert x.shape == (1, 1, 32, 32)
    assert float(x.min()) == pytest.approx(-0.1) and float(x.max()) == pytest.approx(1.175)
    assert float(x[0, 0, 0, 0]) == pytest.approx(-0.1)  # the padding is background too
    dm = MNISTDataModule(data_dir=str(data_dir), val_size=0, pixel_range=[-0.1, 1.175])
    dm.setup()
    images, _ = dm.split("train")
    assert len(images) == 60_000  # val_size=0: every training image trains
    scaled = dm.preprocessing.normalize_(images[:1000].float())
    assert float(scaled.min()) == pytest.approx(-0.1) and float(scaled.max()) == pytest.approx(1.175)
    assert torch.equal(dm.split("val")[1], dm.split("test")[1])  # the validation loop reads the test set


def test_the_unfolded_convolutions_compute_what_conv2d_does():
    torch.manual_seed(3)
    net = LeNet1998()
    cases = [(net.features.C1, torch.randn(3, 1, 32, 32)), (net.features.C5, torch.randn(3, 16, 5, 5))]
    for conv, x in cases:
        assert isinstance(conv, Convolution)
        assert torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias), atol=1e-5)
    s2 = torch.randn(3, 6, 14, 14)
    c3 = net.features.C3
    assert torch.allclose(c3(s2), F.conv2d(s2, c3.dense_weight(), c3.bias), atol=1e-5)
    sub = Subsampling(6)
    torch.nn.init.normal_(sub.weight), torch.nn.init.normal_(sub.bias)
    by_hand = s2.unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2)) * sub.weight[:, None, None] + sub.bias[:, None, None]
    assert torch.allclose(sub(s2), by_hand, atol=1e-5)


def test_each_decision_can_be_undone_alone():
    full = LeNet1998(c3="full")
    assert layer_counts(full)["C3"] == (2_416, 241_600)
    average = LeNet1998(subsampling="average")
    assert layer_counts(average)["S2"][0] == 0 and not isinstance(average.features.S2, Subsampling)
    linear = LeNet1998(output="linear")
    assert layer_counts(linear)["output"] == (850, 850)
    model = {"_target_": "src.models.LeNet1998", "c3": "table_1", "input_size": 32}
    assert isinstance(build_network(model), LeNet1998)


def test_the_recipe_composes_the_papers_protocol(cfg):
    c = cfg("experiment=lecun1998")
    assert c.model._target_ == "src.models.LeNet1998" and c.optimizer._target_ == "src.training.sdlm.SDLM"
    assert c.optimizer.mu == 0.02 and c.optimizer.curvature_patterns == 500
    assert c.per_pattern_updates is True and c.data.val_size == 0 and c.trainer.max_epochs == 20
    assert c.callbacks.model_checkpoint.monitor is None  # the last pass is tested, nothing is chosen on the test set
    assert list(c.data.pixel_range) == [-0.1, 1.175]
    check_training_config(c)
    distorted = cfg("experiment=lecun1998_distorted")
    assert distorted.augment.shear > 0 and list(distorted.augment.squeeze) != [1.0, 1.0]


@pytest.mark.parametrize(
    "overrides,named",
    [
        (["model.c3=partial"], "model.c3='partial': choose one of table_1, full"),
        (["data.pad=0"], "model.input_size=28: must be 32"),
        (["callbacks.model_checkpoint.monitor=val/acc"], "data.val_size=0 with callbacks.model_checkpoint.monitor"),
        (["scheduler=onecycle"], "with per_pattern_updates=true"),
        (["optimizer.curvature=exact"], "optimizer.curvature='exact': choose one of backprop, gauss_newton"),
    ],
)
def test_bad_values_of_the_recipe_are_refused_by_name(cfg, overrides, named):
    with pytest.raises(ConfigError) as caught:
        check_training_config(cfg("experiment=lecun1998", *overrides))
    assert named in str(caught.value)


def test_the_summary_sets_each_layer_beside_the_paper(tmp_path):
    result = run_module("src.summary", "experiment=lecun1998", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "summary.txt").read_text()
    assert "Beside LeCun et al. (1998), section II.B:" in table
    for name, (params, connections) in PAPER_COUNTS.items():
        assert f"{name:<7}{params:>11,}{params:>9,}{connections:>14,}{connections:>10,}" in table
    assert f"{'total':<7}{60_000:>11,}{60_000:>9,}{340_908:>14,}{340_908:>10,}" in table


def test_tensorboards_graph_shows_the_layers_by_their_paper_names(lecun1998_run):
    graph = read_scalars(lecun1998_run.run).Graph()
    names = {node.name for node in graph.node}
    for layer in ("C1", "S2", "C3", "S4", "C5", "F6", "output"):
        assert any(f"[{layer}]/" in name for name in names), layer  # e.g. .../Sequential[features]/Convolution[C1]/
