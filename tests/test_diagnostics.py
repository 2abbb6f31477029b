"""Why isn't it training? callbacks.diagnostics: per-layer gradient norms, activation statistics and histograms in
TensorBoard, read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from src.core.errors import ConfigError
from src.models import LeNet5
from src.training.callbacks.diagnostics import activation_statistics, layer_names
from src.training.rules import check_training_config as validate
from tests.helpers import TINY, read_scalars, run_module

LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")


def test_dead_and_saturated_fractions_on_constructed_outputs():
    relu = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 3.0], [0.0, 0.0, 0.5], [0.0, 1.0, 0.1]])
    stats = activation_statistics(nn.ReLU(), relu)
    assert stats["dead"] == pytest.approx(1 / 3)  # only the first unit is 0 for every example; the second is not dead
    assert stats["mean"] == pytest.approx(relu.mean().item()) and "saturated" not in stats
    sigmoid = torch.tensor([0.01, 0.5, 0.97, 0.96, 0.2, 0.049, 0.951, 0.94])
    assert activation_statistics(nn.Sigmoid(), sigmoid)["saturated"] == pytest.approx(5 / 8)
    tanh = torch.tensor([-0.99, 0.0, 0.96, 0.5])
    assert activation_statistics(nn.Tanh(), tanh)["saturated"] == pytest.approx(2 / 4)
    assert "dead" not in activation_statistics(nn.Tanh(), tanh)


def test_layers_are_named_by_their_place_in_the_network():
    names = layer_names(LeNet5(batch_norm=True))
    assert [names[k] for k in ("features.0", "features.1", "features.2", "features.4")] == [
        "conv1",
        "conv1.bn",
        "conv1.act",
        "conv2",
    ]
    assert names["classifier.0"] == "fc1" and names["classifier.6"] == "fc3"


DIAGNOSED = [
    "model.activation=sigmoid",
    *TINY,
    "trainer.limit_train_batches=30",
    "callbacks.diagnostics.every_n_steps=10",
    "lr_find.enabled=true",
    "lr_find.apply=true",
    "lr_find.num_training=30",
]


@pytest.fixture(scope="module")
def diagnosed_run(tmp_path_factory, data_dir) -> Path:
    """One short sigmoid run with both tools on: the learning-rate finder (30 trial steps, its suggestion applied),
    then training with diagnostics every 10 steps."""
    run = tmp_path_factory.mktemp("diagnosed")
    result = run_module("src.train", *DIAGNOSED, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_diagnostics_write_per_layer_tags_to_tensorboard(diagnosed_run: Path):
    events = read_scalars(diagnosed_run)
    scalars, histograms = set(events.Tags()["scalars"]), set(events.Tags()["histograms"])
    for layer in LAYERS:
        for kind in ("weight", "bias"):
            assert f"diagnostics/grad_norm/{layer}.{kind}" in scalars
            assert {f"diagnostics/weights/{layer}.{kind}", f"diagnostics/gradients/{layer}.{kind}"} <= histograms
    for layer in ("conv1", "conv2", "fc1", "fc2"):  # the activations follow every weighted layer but the last
        for stat in ("mean", "std", "saturated"):
            values = events.Scalars(f"diagnostics/activations/{layer}.act/{stat}")
            assert [v.step for v in values] == [0, 10, 20]  # the training steps only, not the finder's trial steps
    # The per-parameter norms are the parts of the total: its square is their squares' sum, at every step recorded
    for total in events.Scalars("diagnostics/grad_norm/total"):
        parts = [
            next(v.value for v in events.Scalars(f"diagnostics/grad_norm/{layer}.{kind}") if v.step == total.step)
            for layer in LAYERS
            for kind in ("weight", "bias")
        ]
        assert math.sqrt(sum(p * p for p in parts)) == pytest.approx(total.value, rel=1e-3)


def test_step_0s_activation_statistics_are_the_initial_networks_on_the_first_batch(diagnosed_run: Path, tmp_path):
    """What the run recorded at step 0 is what its initial network gives on its first training batch, both rebuilt
    here from the run's config and seed (the lr finder restores the initial weights before training starts)."""
    import lightning as L

    from src.core.config import compose_config
    from src.training.build import build

    cfg = compose_config(*DIAGNOSED, f"paths.output_dir={tmp_path}")
    L.seed_everything(cfg.seed, workers=True)  # as src.train seeds, right before it builds
    datamodule, module, _ = build(cfg)
    datamodule.setup(device="cpu")
    x, _ = next(iter(datamodule.train_dataloader()))
    names, outputs = layer_names(module.net), {}
    for name, m in module.net.named_modules():
        if isinstance(m, nn.Sigmoid):
            m.register_forward_hook(lambda _m, _in, out, layer=names[name]: outputs.__setitem__(layer, out))
    with torch.no_grad():
        module.net.train()(x)
    events = read_scalars(diagnosed_run)
    assert sorted(outputs) == ["conv1.act", "conv2.act", "fc1.act", "fc2.act"]
    for layer, out in outputs.items():
        expected = activation_statistics(nn.Sigmoid(), out)
        assert set(expected) == {"mean", "std", "saturated"}
        for stat, value in expected.items():
            recorded = next(v.value for v in events.Scalars(f"diagnostics/activations/{layer}/{stat}") if v.step == 0)
            assert recorded == pytest.approx(value, rel=1e-4, abs=1e-7), f"{layer} {stat} at step 0"


def test_the_report_draws_each_layers_gradient_norms_from_the_runs_events(diagnosed_run: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    shutil.copytree(diagnosed_run, sweep / "0_run")
    result = run_module("src.report", str(sweep))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gradients.png, gradients.json" in result.stdout
    assert (sweep / "gradients.png").stat().st_size > 10_000
    (bands,) = json.loads((sweep / "gradients.json").read_text()).values()  # one configuration
    assert sorted(bands) == sorted(LAYERS)
    events = read_scalars(sweep / "0_run")
    for layer in LAYERS:  # the numbers drawn are the events' own, step by step (one run: std 0)
        recorded = [(e.step, e.value) for e in events.Scalars(f"diagnostics/grad_norm/{layer}.weight")]
        assert [(p["step"], p["mean"], p["std"]) for p in bands[layer]] == [(s, v, 0.0) for s, v in recorded]
        assert len(recorded) == 3  # 30 steps, every 10


def test_bad_diagnostics_options_are_refused_before_any_work(tmp_path: Path):
    result = run_module(
        "src.train",
        "callbacks.diagnostics.checks=[grad_norm,weights]",
        "callbacks.diagnostics.every_n_steps=-1",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 2
    assert "callbacks.diagnostics.checks=['grad_norm', 'weights']: each must be one of grad_norm, activations" in (
        result.stderr
    )
    assert "callbacks.diagnostics.every_n_steps=-1: must be an integer >= 0" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


# -- the learning-rate finder (lr_find.*) ------------------------------------------------------------------------------
def test_steepest_descent_is_taken_per_decade_of_lr():
    """A loss that falls fastest at lr 1e-3 on log-spaced trial lrs: the suggestion is there. Differentiating with
    respect to lr itself (Lightning 2.6's suggestion()) lands elsewhere on the same curve."""
    from src.training.lr_finder import steepest_descent

    lrs = torch.logspace(-6, 0, 100, dtype=torch.float64)
    losses = 2.3 - torch.tanh(2 * (torch.log10(lrs) + 3))
    suggestion = steepest_descent(lrs.tolist(), losses.tolist())
    assert 1e-3 / 1.2 < suggestion < 1e-3 * 1.2
    per_lr = torch.gradient(losses[10:-1], spacing=[lrs[10:-1]])[0].argmin()
    assert not 1e-3 / 1.2 < lrs[10:-1][per_lr] < 1e-3 * 1.2
    assert steepest_descent([1e-3, 1e-2], [1.0, 0.5]) is None  # too few points past the skipped ends


def test_lr_find_writes_its_plot_and_the_run_trains_at_the_suggestion(diagnosed_run: Path):
    record = json.loads((diagnosed_run / "lr_find.json").read_text())
    assert len(record["lr"]) == len(record["loss"]) == 30 and record["applied"]
    assert record["lr"][0] == pytest.approx(1e-6) and record["lr"] == sorted(record["lr"])
    assert (diagnosed_run / "lr_find.png").stat().st_size > 10_000
    checkpoint = torch.load(diagnosed_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    trained = checkpoint["hyper_parameters"]
    # the default one-cycle schedule peaks at the optimizer's lr: both take the suggestion
    assert trained["optimizer"]["lr"] == trained["scheduler"]["max_lr"] == record["suggestion"]
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["max_lr"] == record["suggestion"]


def test_lr_find_on_a_resumed_run_is_refused(tmp_path: Path):
    result = run_module("src.train", "lr_find.enabled=true", f"resume={tmp_path}", f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode == 2
    assert f"lr_find.enabled=true with resume={tmp_path}: the finder's trial steps would start from" in result.stderr


@pytest.mark.parametrize(
    "overrides,problem",
    [
        (["experiment=lecun1998"], "lr_find.enabled=true with per_pattern_updates=true: the finder raises the rate"),
        (["experiment=lecun1998"], "lr_find.enabled=true with optimizer._target_=src.training.sdlm.SDLM: SDLM steps"),
        (["optimizer=sdlm", "scheduler=none"], "optimizer._target_=src.training.sdlm.SDLM: SDLM steps only after"),
    ],
)
def test_lr_find_with_per_pattern_updates_or_sdlm_is_refused_before_any_work(cfg, overrides, problem):
    """Lightning's finder steps its rising rate only under automatic optimization, and SDLM refuses a step before its
    first curvature estimate: both once ran until the finder's first step, then failed."""
    with pytest.raises(ConfigError, match=re.escape(problem)):
        validate(cfg(*overrides, "lr_find.enabled=true"))
    validate(cfg(*overrides))  # the same recipe without the finder: accepted
