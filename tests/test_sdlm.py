"""Stochastic diagonal Levenberg-Marquardt: its curvature against brute-force versions built from full Jacobian
matrices on a tiny network of the paper's layer kinds, its step, its schedule, and the callback in a real run."""

import json
import re
from collections import OrderedDict
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.autograd.functional import hessian, jacobian
from torch.func import functional_call

from src.core.errors import ConfigError
from src.models import LeNet5, outputs
from src.models.lenet1998 import Convolution, EuclideanRBF, NegativePenalty, SparseConv, Squash, Subsampling
from src.training.callbacks.curvature import SDLMCurvature
from src.training.curvature import CURVATURES, backprop_diagonal, gauss_newton_diagonal, loss_hessian, split_network
from src.training.lit_module import LitLeNet5
from src.training.rules import check_training_config as validate
from src.training.sdlm import SDLM
from tests.helpers import TINY, read_scalars, run_module


class TinyPaperNet(nn.Module):
    """C1 -> S2 -> a sparse C3 -> F6 -> fixed RBF units, as LeNet1998 but small enough for full Jacobians."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            OrderedDict(
                C1=Convolution(1, 2, 3),
                C1_f=Squash(),
                S2=Subsampling(2),
                S2_f=Squash(),
                C3=SparseConv(((0,), (0, 1), (1,)), 2, 3),
                C3_f=Squash(),
                flatten=nn.Flatten(),
            )
        )
        rbf = EuclideanRBF()
        rbf.centers = torch.randint(0, 2, (3, 4)).float() * 2 - 1  # three classes' codes of four units
        self.classifier = nn.Sequential(
            OrderedDict(F6=nn.Linear(12, 4), F6_f=Squash(), output=rbf, negative=NegativePenalty())
        )
        for p in self.parameters():  # larger than the paper's start, so every term is far from zero
            nn.init.uniform_(p, -0.8, 0.8)
        self.rubbish_logit = -2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def patterns(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(n, 1, 10, 10), torch.tensor([0, 2, 1])[:n]


def start_hessian(net: nn.Module, head: nn.Module, z: torch.Tensor, label: torch.Tensor, source: str) -> torch.Tensor:
    """By hand: the Hessian in z of the loss, or of the correct class's RBF penalty y_D (minus its logit)."""
    if source == "penalty":
        return hessian(lambda z1: -head(z1[None])[0, int(label)], z)
    return hessian(lambda z1: outputs.loss(net, head(z1[None]), label[None]), z)


@pytest.mark.parametrize("source", ["loss", "penalty"])
def test_the_papers_backprop_curvature_equals_a_brute_force_recursion_over_full_jacobians(source):
    net = TinyPaperNet()
    inputs, labels = patterns()
    got = backprop_diagonal(net, inputs, labels, source)
    body, head = split_network(net)
    layers = [*body[0], *body[1:]]
    expected = {p: torch.zeros_like(p) for p in net.parameters()}
    for x, label in zip(inputs, labels):
        values = [x[None]]
        for layer in layers:
            values.append(layer(values[-1]).detach())
        z = values[-1][0]
        second = torch.diagonal(start_hessian(net, head, z, label, source))
        # d2E/d(output)^2 of each layer, from the top down: through every layer, the squared Jacobian (the paper's
        # rule: cross terms dropped); at a layer with weights, d2E/dw^2 = sum over connections of x^2 d2E/da^2,
        # i.e. the Jacobian in the weights of the same layer fed with the squared inputs.
        for layer, u in zip(reversed(layers), reversed(values[:-1])):
            flat_second = second.flatten()
            for name, p in layer.named_parameters():
                params = dict(layer.named_parameters())

                def of_weight(w, name=name, layer=layer, u=u, params=params):
                    return functional_call(layer, {**params, name: w}, (u.square(),)).flatten()

                jac_w = jacobian(of_weight, p.detach())  # (outputs, *p.shape)
                expected[p] += (flat_second.view(-1, *[1] * p.dim()) * jac_w).sum(0)
            jac_u = jacobian(lambda u1, layer=layer: layer(u1).flatten(), u).reshape(flat_second.numel(), -1)
            second = (jac_u.square().T @ flat_second).view_as(u)
    for p in net.parameters():
        assert torch.allclose(got[p], expected[p] / len(labels), rtol=1e-4, atol=1e-7), p.shape
        assert bool((got[p] >= 0).all())


@pytest.mark.parametrize("source", ["loss", "penalty"])
def test_the_exact_gauss_newton_diagonal_equals_the_diagonal_of_j_t_h_j(source):
    net = TinyPaperNet()
    inputs, labels = patterns()
    got = gauss_newton_diagonal(net, inputs, labels, source)
    body, head = split_network(net)
    names = [n for n, _ in body.named_parameters()]
    shapes = [p.shape for _, p in body.named_parameters()]
    flat = torch.cat([p.detach().flatten() for _, p in body.named_parameters()])

    def z_of(theta, x):
        pieces = dict(zip(names, (t.view(s) for t, s in zip(theta.split([s.numel() for s in shapes]), shapes))))
        return functional_call(body, pieces, (x[None],))[0]

    total = torch.zeros_like(flat)
    for x, label in zip(inputs, labels):
        J = jacobian(lambda theta, x=x: z_of(theta, x), flat)  # (|z|, P)
        H = start_hessian(net, head, z_of(flat, x), label, source)
        total += torch.diagonal(J.T @ H @ J)
    expected = total / len(labels)
    got_flat = torch.cat([got[p].flatten() for _, p in body.named_parameters()])
    assert torch.allclose(got_flat, expected, rtol=1e-4, atol=1e-7)


def test_the_loss_s_curvature_vanishes_on_a_confident_pattern_and_the_penalty_s_does_not():
    net = TinyPaperNet()
    _, head = split_network(net)
    head[0].centers = head[0].centers * 3  # codes of +-3: every two classes' penalties differ by 36 or more
    labels, far, at_code = torch.tensor([0]), torch.zeros(1, 4), head[0].centers[:1]
    twos = torch.full((1, 4), 2.0)

    def curvature(z: torch.Tensor, source: str = "loss") -> torch.Tensor:
        return torch.diagonal(loss_hessian(net, head, z, labels, source), dim1=1, dim2=2)

    # far from every code (every penalty 36, the rubbish class's j = 2): no class is likely, the criterion curves as
    # y_D does; at class 0's code with j = 30, p_D is 1 and the competitive term cancels y_D's curvature
    assert torch.allclose(curvature(far), twos)
    net.rubbish_logit = -30.0
    assert curvature(at_code).abs().max() < 1e-5
    for z in (far, at_code):  # y_D's own Hessian: 2 per unit, whatever the pattern
        assert torch.equal(curvature(z, "penalty"), twos)
    with pytest.raises(ValueError, match="source='distance': must be one of loss, penalty"):
        curvature(far, "distance")
    net5 = LeNet5()  # no RBF units: a logit's Hessian is 0, and so would every h_kk be
    with pytest.raises(ValueError, match=r"source='penalty' needs RBF units .*head is empty: use source='loss'"):
        loss_hessian(net5, split_network(net5)[1], torch.zeros(1, 10), labels, "penalty")


def test_the_callback_estimates_the_curvature_from_the_optimizer_s_source(cfg, data_dir, monkeypatch):
    c = cfg("experiment=lecun1998", "optimizer.curvature_from=penalty", "optimizer.curvature_patterns=20")
    datamodule = instantiate(c.data)
    datamodule.setup("fit")
    net = instantiate(c.model)
    sdlm = instantiate(c.optimizer)(net.parameters())
    sources = []

    def recording(*args: object) -> dict:
        sources.append(args[3:])
        return backprop_diagonal(*args)

    monkeypatch.setitem(CURVATURES, "backprop", recording)
    trainer = SimpleNamespace(optimizers=[sdlm], datamodule=datamodule, current_epoch=0)
    SDLMCurvature().on_train_epoch_start(trainer, SimpleNamespace(net=net, log=lambda *args, **kwargs: None))
    assert sources == [("penalty",)]
    assert all("curvature" in sdlm.state[p] for p in net.parameters())


class NamedSDLM(SDLM):
    """A user's own SDLM (a subclass under another ``_target_``): it needs the curvature callback as SDLM does."""


def test_the_module_attaches_the_curvature_callback_to_fit_with_sdlm_and_its_subclasses_only(cfg):
    for optimizer, attached in (("src.training.sdlm.SDLM", True), (f"{__name__}.NamedSDLM", True), (None, False)):
        overrides = [f"optimizer._target_={optimizer}"] if optimizer else ["optimizer=sgd", "scheduler=none"]
        module = LitLeNet5.from_config(cfg("experiment=lecun1998", *overrides))
        module.trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
        for stage, expected in ((TrainerFn.FITTING, attached), (TrainerFn.TESTING, False)):
            module.trainer.state.fn = stage
            callbacks = module.configure_callbacks()
            assert [type(c) for c in callbacks] == ([SDLMCurvature] if expected else []), (optimizer, stage)


def test_the_step_divides_each_gradient_by_mu_plus_its_curvature():
    w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    optimizer = SDLM([w], lr=0.1, mu=0.02)
    (w * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    with pytest.raises(RuntimeError, match="no curvature estimate"):
        optimizer.step()
    optimizer.set_curvature({w: torch.tensor([0.0, 1.0, 10.0])})
    optimizer.step()
    expected = torch.tensor([1.0 - 0.1 * 1 / 0.02, -2.0 - 0.1 * 2 / 1.02, 3.0 - 0.1 * 3 / 10.02])
    assert torch.allclose(w.detach(), expected)


def test_the_schedule_gives_the_papers_rates_pass_by_pass(cfg):
    c = cfg("experiment=lecun1998", "optimizer.lr=0.0005")
    w = torch.zeros(1, requires_grad=True)
    optimizer = instantiate(c.optimizer)([w])
    options = {k: v for k, v in c.scheduler.items() if k != "interval"}
    scheduler = instantiate(options)(optimizer)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert rates == pytest.approx([5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8)


def test_curvature_from_penalty_is_refused_without_rbf_units(cfg):
    for model in (["model=lenet5"], ["model=lenet5_1998", "model.output=linear"]):
        with pytest.raises(ConfigError, match="optimizer.curvature_from=penalty with model._target_=src.models.LeNet"):
            validate(cfg("optimizer=sdlm", "optimizer.curvature_from=penalty", "scheduler=none", *model))
    with pytest.raises(ConfigError, match=r"optimizer.curvature_from='hessian': choose one of loss, penalty"):
        validate(cfg("experiment=lecun1998", "optimizer.curvature_from=hessian"))
    validate(cfg("experiment=lecun1998", "optimizer.curvature_from=penalty"))  # the paper's network: accepted


def test_a_real_run_estimates_the_curvature_before_each_pass_and_updates_once_per_pattern(tmp_path, data_dir):
    tiny = [o for o in TINY if not o.startswith("trainer.max_epochs")]
    result = run_module(
        "src.train", "experiment=lecun1998", *tiny, "trainer.max_epochs=2", "data.batch_size=10",
        "optimizer.curvature_from=penalty", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # attached to the fit only: the test after it is not told that it replaces a callback of the Trainer's
    assert "override existing callbacks" not in result.stdout + result.stderr
    log = (tmp_path / "train.log").read_text()
    assert len(re.findall(r"SDLM curvature on 500 patterns from the penalty", log)) == 2  # one before each pass
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["step"] for row in history] == [30, 60]  # 3 batches of 10 images a pass: one update per image
    scalars = read_scalars(tmp_path)
    assert len(scalars.Scalars("sdlm/mean_curvature")) == 2
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    states = checkpoint["optimizer_states"][0]["state"]
    assert len(states) == 12 and all("curvature" in s for s in states.values())
    assert checkpoint["lr_schedulers"][0]["_last_lr"] == pytest.approx([0.4 * 2e-5])  # the third pass's rate
