"""Muon: the Newton-Schulz orthogonalisation against the SVD's U V^T, its step against a hand computation (matrices)
and against torch.optim.SGD (biases, the output layer), and the groups LitLeNet5 gives it in a real run."""

import pytest
import torch

from src.core.errors import ConfigError
from src.models import LeNet5
from src.training.muon import Muon, orthogonalize
from src.training.rules import check_training_config as validate
from tests.helpers import TINY, run_module


@pytest.mark.parametrize("shape", [(6, 25), (16, 150), (120, 400), (400, 120)])
def test_newton_schulz_approaches_the_nearest_orthogonal_matrix(shape):
    torch.manual_seed(0)
    g = torch.randn(shape) @ torch.diag(torch.logspace(-1, 1, shape[1]))  # badly conditioned, as gradients are
    u, s, vt = torch.linalg.svd(g, full_matrices=False)
    o = orthogonalize(g, steps=5)
    singular = torch.linalg.svdvals(o)
    assert singular.max() < 1.25 and singular.min() > 0.5  # every direction moves by a similar amount
    assert singular.max() / singular.min() < 2.5 < s.max() / s.min()
    cosine = (o * (u @ vt)).sum() / (o.norm() * (u @ vt).norm())
    assert cosine > 0.97  # and the directions are the gradient's own


def test_a_step_is_momentum_orthogonalised_for_matrices_and_sgd_for_the_rest():
    torch.manual_seed(0)
    net = LeNet5()
    output = set(net.output_layer.parameters())
    lr, momentum, decay, scale = 0.02, 0.9, 0.5, 5.0  # a large decay: its order in the step shows
    groups = [
        {"params": [p for p in net.parameters() if p not in output]},
        {"params": list(output), "orthogonalize": False},
    ]
    muon = Muon(groups, lr=lr, momentum=momentum, weight_decay=decay, plain_lr_scale=scale)
    plain = {name: p for name, p in net.named_parameters() if p.ndim < 2 or p in output}
    shadow = {name: p.detach().clone().requires_grad_() for name, p in plain.items()}  # stepped by SGD
    sgd = torch.optim.SGD(shadow.values(), lr=lr * scale, momentum=momentum, nesterov=True, weight_decay=decay)
    conv = net.features[0].weight
    weight, buffer = conv.detach().clone(), torch.zeros_like(conv)
    for step in range(3):
        x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
        muon.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        for name, p in plain.items():
            shadow[name].grad = p.grad.clone()
        grad = conv.grad.clone()
        buffer = grad.clone() if step == 0 else buffer * momentum + grad
        rows = (grad + momentum * buffer).reshape(6, -1)
        weight = weight * (1 - lr * decay) - lr * orthogonalize(rows).view_as(weight)  # wide: no row scaling
        muon.step()
        sgd.step()
    torch.testing.assert_close(conv.detach(), weight)
    assert len(plain) == 6  # five biases and the output layer's weight
    for name, p in plain.items():  # the same steps as torch.optim.SGD's
        torch.testing.assert_close(p.detach(), shadow[name].detach(), msg=name)


def test_plain_momentum_its_iteration_count_and_a_tall_matrix_s_scaling():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(12, 3))
    muon = Muon([p], lr=0.1, momentum=0.5, nesterov=False, ns_steps=2)
    expected = p.detach().clone()
    g1, g2 = torch.randn(12, 3), torch.randn(12, 3)
    for update in (g1, 0.5 * g1 + g2):  # the momentum buffer itself, without Nesterov's look-ahead
        expected -= 0.1 * orthogonalize(update, steps=2) * 2.0  # rows of a tall matrix: scaled by sqrt(12 / 3)
    for g in (g1, g2):
        p.grad = g
        muon.step()
    torch.testing.assert_close(p.detach(), expected)


def test_muon_refuses_bad_settings_naming_them(cfg):
    with pytest.raises(ValueError, match=r"ns_steps >= 1 .*got 0.02, 0.95, 0.0, 0, 5.0"):
        Muon(LeNet5().parameters(), ns_steps=0)
    with pytest.raises(ConfigError) as err:  # src.train's checks, before any data or output is touched
        validate(cfg("optimizer=muon", "optimizer.ns_steps=0", "optimizer.plain_lr_scale=0"))
    assert "optimizer.ns_steps=0: must be an integer >= 1" in str(err.value)
    assert "optimizer.plain_lr_scale=0: must be a number > 0" in str(err.value)


@pytest.mark.parametrize(
    ("model", "groups"),
    [("lenet5", [(True, 8), (False, 2)]), ("lenet5_1998", [(True, 12)])],  # LeNet1998's RBF units: fixed, no group
)
def test_a_real_run_orthogonalises_the_hidden_layers_and_not_the_output_layer(model, groups, tmp_path, data_dir):
    result = run_module(
        "src.train", f"model={model}", "optimizer=muon", *TINY, "logger=csv", "test=false", f"hydra.run.dir={tmp_path}"
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["optimizer_states"][0]
    assert [(g["orthogonalize"], len(g["params"])) for g in state["param_groups"]] == groups
    assert len(state["state"]) == sum(n for _, n in groups)  # every parameter took its steps
