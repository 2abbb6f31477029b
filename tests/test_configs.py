"""Every config group option composes with Hydra's compose API and instantiates into real objects, and is the one the
README documents."""

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from src.core.config import CONFIG_DIR
from src.core.errors import ConfigError
from src.report.reading import parameter_count
from src.training.build import build
from src.training.lit_module import LitLeNet5
from src.training.rules import check_training_config as validate
from tests.helpers import ROOT, TINY, assert_orthonormal_rows, run_module

GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in CONFIG_DIR.iterdir() if g.is_dir()}


def in_folder(composed, tmp_path: Path):
    """The composed config, writing into ``tmp_path`` (the run's folder, and the shared stores: MLflow's database)."""
    with open_dict(composed):
        composed.paths.output_dir = str(tmp_path)
        composed.paths.log_dir = str(tmp_path / "outputs")
    return composed


def readme_config_table() -> dict[str, set[str]]:
    """The README's configuration table: each config group it names, with the options it lists for it (a row may
    name two groups, their options apart by ';'; words in brackets are notes)."""
    text = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for row in (line for line in text.splitlines() if line.startswith("| `")):
        names, options = row.strip("|").split("|")[:2]
        groups = re.findall(r"`([\w/]+)`", names)
        parts = re.sub(r"\([^)]*\)", "", options).split(";")
        for group, part in zip(groups, parts):
            listed = {o for o in re.findall(r"`([^`]+)`", part) if "." not in o}
            if group in GROUPS and listed:
                documented[group] = listed
    return documented


def test_the_config_groups_are_the_ones_the_readme_documents():
    """Adding, renaming or removing an option of a group the README's table lists (or a recipe) fails here until the
    README says so: the manual and conf/ agree."""
    documented = readme_config_table()
    assert {"data", "augment", "optimizer", "scheduler", "trainer", "logger", "hparams_search"} <= set(documented)
    for group, options in documented.items():
        assert options == set(GROUPS[group]), f"{group}: the README lists {sorted(options)}, conf/ has {GROUPS[group]}"
    recipes = set(re.findall(r"`experiment=(\w+)`", (ROOT / "README.md").read_text()))
    assert recipes == set(GROUPS["experiment"]), (
        f"recipes in the README {sorted(recipes)}, in conf/ {GROUPS['experiment']}"
    )


# What sets the data's shape or a run's speed, not what it learns: no column of its own.
NOT_RECIPE_KEYS = {"_target_", "_partial_", "in_channels", "num_classes", "input_size", "channels_last"}


@pytest.mark.parametrize("group", ["model", "optimizer"])
def test_every_model_and_optimizer_option_is_a_hparams_column(group, cfg):
    """A sweep over any option of the network or the optimizer (model.c3 in the 1998 ablations, optimizer.ns_steps for
    Muon) tells its runs apart in TensorBoard's HPARAMS tab and MLflow's params: each option is a column holding the
    run's value, and a column that some options leave blank has its type declared, so every run declares it alike."""
    types = cfg().callbacks.hparams_session.types
    columns: dict[str, set[str]] = {}  # column -> the options that have it
    for option in GROUPS[group]:
        composed = cfg(f"{group}={option}")
        session = composed.callbacks.hparams_session
        for key, value in composed[group].items():
            if key in NOT_RECIPE_KEYS:
                continue
            name = f"{group}.{key}"
            assert name in session.hparams, f"{group}={option}: {name} is not a column of callbacks.hparams_session"
            assert session.hparams[name] == value, (name, session.hparams[name], value)
            columns.setdefault(name, set()).add(option)
    untyped = [n for n, having in columns.items() if having != set(GROUPS[group]) and n not in types]
    assert not untyped, f"columns some {group} options leave blank, without a declared type: {untyped}"


@pytest.mark.parametrize(
    "override",
    [
        f"{group}={option}"
        for group in ("data", "augment", "model", "optimizer", "trainer", "logger", "callbacks")
        for option in GROUPS[group]
        if not (group == "trainer" and option in ("gpu", "ddp"))
    ],
)
def test_group_option_instantiates(override, tmp_path, data_dir, cfg):
    composed = in_folder(cfg(override), tmp_path)
    datamodule, model, trainer = build(composed)
    assert isinstance(datamodule, L.LightningDataModule) and isinstance(trainer, L.Trainer)
    side = 28 + 2 * composed.data.pad  # the model group's input size follows the data group's padding
    assert model.net.input_size == side and model(torch.zeros(2, 1, side, side)).shape == (2, 10)


@pytest.mark.parametrize("scheduler", GROUPS["scheduler"])
@pytest.mark.parametrize("optimizer", GROUPS["optimizer"])
def test_optimizer_and_scheduler_build_and_step(optimizer, scheduler, tmp_path, data_dir, cfg):
    """configure_optimizers needs the trainer (run length), so each pair trains for a few batches."""
    overrides = [f"optimizer={optimizer}", f"scheduler={scheduler}", *TINY, "logger=csv", "test=false"]
    composed = in_folder(cfg(*overrides), tmp_path)
    if (optimizer, scheduler) == ("sdlm", "onecycle"):  # one-cycle cycles a momentum SDLM does not have
        with pytest.raises(ConfigError, match="one-cycle cycles the momentum") as refused:
            validate(composed)
        # the message's way out is an override Hydra takes, and the rule then accepts the run
        switch_off = re.search(r"or set (\S+=false)", str(refused.value)).group(1)
        composed = in_folder(cfg(*overrides, switch_off), tmp_path)
        assert composed.scheduler.cycle_momentum is False
    cfg = composed
    validate(cfg)
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    opt = trainer.optimizers[0]
    assert type(opt).__name__ == {"sgd": "SGD", "adam": "Adam", "sdlm": "SDLM", "muon": "Muon"}[optimizer]
    assert opt.defaults["lr"] == cfg.optimizer.lr and trainer.global_step == 3
    configs = trainer.lr_scheduler_configs
    assert len(configs) == (0 if scheduler == "none" else 1)


@pytest.mark.parametrize("experiment", GROUPS["experiment"])
def test_experiment_composes(experiment, tmp_path, data_dir, cfg):
    cfg = in_folder(cfg(f"experiment={experiment}"), tmp_path)
    validate(cfg)  # every recipe passes the checks a user's command meets
    datamodule, model, trainer = build(cfg)
    params = sum(p.numel() for p in model.net.parameters())
    # src.report's parameter column counts the network the run built (d2l_bn's unpadded inputs: 44,652, not 61,932)
    assert parameter_count(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.data)) == params
    if experiment.startswith("best_"):
        assert params <= 70_000, f"{experiment}: {params:,} parameters, not LeNet-5-sized"
    if experiment == "robust_mnist":  # its published figure is an accuracy under attack, not a clean one
        assert 0 < cfg.reference.robust_acc < 1 and cfg.reference.source and cfg.adversarial.epsilon > 0
        assert params <= 70_000, f"{experiment}: {params:,} parameters, not LeNet-5-sized"
    elif cfg.get("reference"):
        assert 0 < cfg.reference.test_acc < 1 and cfg.reference.source
    else:
        assert experiment == "fast_mnist", f"{experiment} names no published result to compare with"
    if experiment == "d2l_sigmoid":
        assert cfg.data.dataset == "fashion_mnist" and cfg.model.activation == "sigmoid"
        assert cfg.optimizer.lr == 0.9 and cfg.data.batch_size == 256 and cfg.trainer.max_epochs == 10
        assert cfg.model.init == "xavier" and cfg.model.pooling == "avg" and cfg.data.pad == 2
        assert cfg.data.normalize is False and datamodule.hparams.normalize is False  # d2l feeds raw [0, 1] pixels
    if (
        experiment == "d2l_bn"
    ):  # d2l's BatchNorm LeNet: unpadded 28x28 inputs, 16x4x4 = 256 features into the classifier
        assert cfg.model.batch_norm and cfg.optimizer.lr == 1.0 and cfg.data.pad == 0 and not cfg.data.normalize
        assert model.net.input_size == 28 and model.net.classifier[0].in_features == 256
    if experiment == "dive_into_dl_pytorch":  # the Chinese PyTorch edition's LeNet: unpadded, sigmoid, max pooling
        assert cfg.data.dataset == "fashion_mnist" and cfg.data.pad == 0 and not cfg.data.normalize
        assert cfg.model.activation == "sigmoid" and cfg.model.pooling == "max" and cfg.model.init == "default"
        assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.001
        assert cfg.data.batch_size == 256 and cfg.trainer.max_epochs == 5
        assert model.net.input_size == 28 and model.net.classifier[0].in_features == 16 * 4 * 4


def test_d2l_improved_is_d2l_sigmoid_with_the_exercises_winners(cfg):
    """docs/exercises.md's improved network: d2l's recipe with exactly the four changes its exercises chose, the rest
    (data, batch, epochs, layer sizes) d2l's, so that the comparison there is one of those changes alone."""

    def flat(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")
            elif key != "reference" and not prefix.startswith(("hydra.", "paths.", "reference.")):
                yield f"{prefix}{key}", value

    d2l, improved = (
        dict(flat(OmegaConf.to_container(cfg(f"experiment={e}")))) for e in ("d2l_sigmoid", "d2l_improved")
    )
    changed = {
        key: (d2l.get(key), improved.get(key))
        for key in d2l.keys() | improved.keys()
        if d2l.get(key) != improved.get(key)
    }
    assert changed == {
        "model.activation": ("sigmoid", "tanh"),
        "model.pooling": ("avg", "max"),
        "model.init": ("xavier", "kaiming"),
        "optimizer.lr": (0.9, 0.1),
    }


def test_dive_into_dl_pytorch_trains_on_unpadded_fashion_mnist(tmp_path, data_dir, cfg):
    cfg = in_folder(cfg("experiment=dive_into_dl_pytorch", *TINY, "logger=csv", "test=false"), tmp_path)
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    x, _ = next(iter(datamodule.train_dataloader()))
    assert x.shape[1:] == (1, 28, 28) and 0 <= x.min() and x.max() <= 1  # raw pixels, no padding
    assert trainer.global_step == 3 and type(trainer.optimizers[0]).__name__ == "Adam"


@pytest.mark.parametrize(
    "override,expected",
    [
        ("model.activaton=tanh", "Could not override 'model.activaton'"),
        ("optimizer=adamm", "Could not find 'optimizer/adamm'"),
    ],
)
def test_misspelt_key_or_choice_fails_at_start_with_hydras_message(override, expected, tmp_path):
    result = run_module("src.train", override, f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert expected in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_fast_mnist_starts_with_orthonormal_rows_in_every_layer(cfg):
    torch.manual_seed(0)
    assert_orthonormal_rows(LitLeNet5.from_config(cfg("experiment=fast_mnist")).net)


def test_fast_mnist_trains_in_bf16_exactly_where_the_cpu_has_bf16_instructions(cfg, monkeypatch):
    """experiment=fast_mnist's precision follows the CPU's flags (read here from /proc/cpuinfo, apart from the code's
    probe through torch): bf16-mixed with AVX-512 BF16 or AMX, 32-true without them, where bf16 is slower."""
    from src.core.config import fastest_precision

    flags = set()
    if Path("/proc/cpuinfo").exists():
        flags = {f for line in open("/proc/cpuinfo") if line.startswith("flags") for f in line.split(":")[1].split()}
    expected = "bf16-mixed" if flags & {"avx512_bf16", "amx_tile"} else "32-true"
    assert cfg("experiment=fast_mnist", "trainer.accelerator=cpu").trainer.precision == expected
    assert cfg("trainer.accelerator=cpu").trainer.precision == "32-true"  # the default recipe keeps fp32
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # a CPU without them
        monkeypatch.setattr(torch.cpu, probe, lambda: False)
    assert fastest_precision("cpu") == "32-true"
