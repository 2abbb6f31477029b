"""src.trust: calibration, the MNIST-C corruptions, FGSM and PGD, attributions, on real checkpoints trained on the real
data (the session's mnist_run and fashion_run), and the command end to end with src.report reading its figures."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from src.core.errors import CheckpointError, ConfigError
from src.models.stages import feature_stages
from src.training.adversarial import PixelModel, adversarial_batch
from src.training.checkpoints import load_checkpoint
from src.trust.attacks import fgsm, pgd
from src.trust.attributions import attribute
from src.trust.calibration import expected_calibration_error, fit_temperature, negative_log_likelihood, reliability
from src.trust.corruptions import CORRUPTIONS, corrupt, corruptions_for, unavailable_corruptions
from src.trust.targets import find_targets, splits
from tests.helpers import CodePayload, compose_config, read_scalars, run_module

# corruptions without a random draw: the same image always gives the same result, whatever the seed
FIXED = {"scale", "brightness", "stripe", "canny_edges"}


def logits_with_confidence(confidence: float, predicted: int, classes: int = 10) -> torch.Tensor:
    """Logits whose softmax gives ``predicted`` probability ``confidence`` and the other classes the rest, evenly."""
    p = torch.full((classes,), (1 - confidence) / (classes - 1), dtype=torch.float64)
    p[predicted] = confidence
    return p.log()


def constructed(groups: list[tuple[float, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, images, correct) per group: that many predictions at that confidence, the first ``correct`` of
    them right (the label is the predicted class), the rest wrong."""
    logits, labels = [], []
    for confidence, n, correct in groups:
        for i in range(n):
            logits.append(logits_with_confidence(confidence, 3))
            labels.append(3 if i < correct else 5)
    return torch.stack(logits).float(), torch.tensor(labels)


def test_ece_of_a_perfectly_calibrated_set_is_about_zero():
    # in every bin the share of right predictions equals the confidence
    logits, labels = constructed([(0.2, 100, 20), (0.45, 200, 90), (0.7, 100, 70), (0.9, 300, 270), (0.98, 50, 49)])
    assert expected_calibration_error(logits, labels, bins=15) == pytest.approx(0.0, abs=1e-5)


def test_ece_of_an_overconfident_set_matches_a_hand_computation():
    # 200 predictions at 0.95 with 70% right, 100 at 0.62 with half right: |0.95-0.7|*200/300 + |0.62-0.5|*100/300
    logits, labels = constructed([(0.95, 200, 140), (0.62, 100, 50)])
    expected = (0.25 * 200 + 0.12 * 100) / 300
    assert expected_calibration_error(logits, labels, bins=15) == pytest.approx(expected, abs=1e-5)
    diagram = reliability(logits, labels, bins=15)  # 0.95 in the last bin (14/15, 1], 0.62 in (9/15, 10/15]
    assert sum(diagram.counts) == 300 and diagram.counts[14] == 200 and diagram.counts[9] == 100
    assert diagram.accuracy[14] == pytest.approx(0.7) and diagram.confidence[14] == pytest.approx(0.95, abs=1e-6)


@pytest.fixture(scope="module")
def mnist(mnist_run):
    """The session's MNIST checkpoint as a function of [0, 1] pixels, its validation split and 1,000 test images."""
    loaded = load_checkpoint(mnist_run.ckpt)
    val, test = splits(loaded, compose_config(config_name="trust").data, torch.device("cpu"), 1000)
    net = loaded.net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return PixelModel(net, loaded.preprocessing), val, test, loaded


def test_temperature_scaling_lowers_the_validation_nll_of_an_overconfident_model(mnist):
    model, (val_x, val_y), _, _ = mnist
    with torch.no_grad():
        own = model(val_x)
    logits = own * 4  # the trained network made overconfident: the same predictions, sharper
    temperature = fit_temperature(logits, val_y)
    # it undoes the sharpening: four times the temperature the network's own logits need (which is not 1 when the
    # recipe trains with label smoothing, as fast_mnist does)
    assert temperature / fit_temperature(own, val_y) == pytest.approx(4, rel=0.05), temperature
    assert negative_log_likelihood(logits / temperature, val_y) < negative_log_likelihood(logits, val_y) - 0.01
    assert expected_calibration_error(logits / temperature, val_y) < expected_calibration_error(logits, val_y)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_deterministic_per_seed_keeps_shape_and_range_and_changes_the_image(name, mnist):
    images = mnist[2][0][:64]
    once, again, other = corrupt(name, images, 0), corrupt(name, images, 0), corrupt(name, images, 1)
    assert once.shape == images.shape and once.dtype == images.dtype
    assert once.min() >= 0 and once.max() <= 1
    assert torch.equal(once, again)
    assert (once - images).abs().mean() > 0.01, "the corruption barely changed the images"
    assert torch.equal(once, other) == (name in FIXED)


def test_fashion_mnist_gets_the_corruptions_that_suit_garments(cfg):
    assert len(corruptions_for("mnist")) == 15
    garments = corruptions_for("fashion_mnist")
    assert len(garments) == 13 and "zigzag" not in garments and "dotted_line" not in garments
    (problem,) = unavailable_corruptions(["fog", "zigzag"], "fashion_mnist", "auto", Path("/nonexistent"))
    assert re.search("zigzag .*for fashion_mnist choose among", problem), problem


def test_official_mnist_c_files_are_read_where_placed_under_the_data_root(mnist, tmp_path):
    """The zenodo layout, <root>/mnist_c/<name>/test_images.npy (uint8, N x 28 x 28 x 1) and test_labels.npy; here
    filled with the real test images themselves, so the accuracy read must be the clean one."""
    from src.trust.checks import check_corruptions

    model, _, (x, y), loaded = mnist
    folder = tmp_path / "mnist_c" / "rotate"
    folder.mkdir(parents=True)
    np.save(folder / "test_images.npy", (x * 255).round().byte().permute(0, 2, 3, 1).numpy())
    np.save(folder / "test_labels.npy", y.numpy())
    from torch.utils.tensorboard import SummaryWriter

    settings = compose_config("corruptions.names=[rotate,fog]", config_name="trust")
    writer = SummaryWriter(str(tmp_path / "events"))
    result = check_corruptions(model, (x, y), settings, "mnist", tmp_path / "mnist_c", loaded.classes, tmp_path, writer)
    writer.close()
    assert result["sources"] == {"rotate": "official", "fog": "generated"} and result["source"] == "mixed"
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert result["accuracy"]["rotate"] == pytest.approx(clean)
    (problem,) = unavailable_corruptions(["rotate", "fog"], "mnist", "official", tmp_path / "mnist_c")
    assert "lacks fog" in problem and "rotate" not in problem.split("lacks")[1].split("(")[0]


def accuracy_on(model, images, labels) -> float:
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def test_fgsm_at_zero_is_clean_and_accuracy_does_not_rise_with_epsilon(mnist):
    model, _, (x, y), _ = mnist
    clean = accuracy_on(model, x, y)
    curve = [accuracy_on(model, fgsm(model, x, y, e), y) for e in (0.0, 0.05, 0.1, 0.2, 0.3)]
    assert curve[0] == clean > 0.95
    assert all(a >= b for a, b in zip(curve, curve[1:])), curve
    assert curve[-1] < 0.5 * clean, curve  # a standard LeNet-5 falls far at 0.3


def test_fgsm_matches_a_plain_fgsm_written_here(mnist):
    """PyTorch's tutorial's FGSM, written out: the loss gradient of the normalised network's input taken back to
    pixels, one signed step, clipped to [0, 1]."""
    model, _, (x, y), loaded = mnist
    data, net, epsilon = loaded.preprocessing, model.net, 0.1
    pixels = x.clone().requires_grad_(True)
    normalised = (F.pad(pixels, (data.pad,) * 4) - data.mean) / data.std
    F.nll_loss(F.log_softmax(net(normalised), dim=1), y, reduction="sum").backward()
    plain = torch.clamp(pixels + epsilon * pixels.grad.sign(), 0, 1).detach()
    ours = fgsm(model, x, y, epsilon)
    assert torch.equal(ours, plain)
    assert accuracy_on(model, ours, y) == accuracy_on(model, plain, y)


@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.2])
def test_pgd_is_at_least_as_strong_as_fgsm_and_stays_inside_the_epsilon_ball(epsilon, mnist):
    model, _, (x, y), _ = mnist
    x, y = x[:500], y[:500]
    result = pgd(
        model, x, y, epsilon, steps=10, step_size=2.5 * epsilon / 10, generator=torch.Generator().manual_seed(0)
    )
    adversarial = result.adversarial
    assert (adversarial - x).abs().max() <= epsilon + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    with torch.no_grad():
        assert torch.equal(model(adversarial).argmax(1) != y, result.fooled)  # what it reports is what it found
    assert 1 - float(result.fooled.float().mean()) <= accuracy_on(model, fgsm(model, x, y, epsilon), y)


def test_attribution_maps_have_the_inputs_shape(mnist):
    model, _, (x, _), _ = mnist
    conv2 = next(m for name, m in feature_stages(model.net) if name.startswith("conv2"))
    result = attribute(model, conv2, x[:4], ["saliency", "integrated_gradients", "grad_cam"], steps=16)
    for name, m in result["maps"].items():
        assert m.shape == x[:4].shape, name
        assert torch.isfinite(m).all() and m.abs().sum() > 0, name


def test_bad_settings_are_refused_at_once_before_any_work(mnist_run, tmp_path):
    result = run_module(
        "src.trust",
        f"ckpt_path={mnist_run.ckpt}",
        "checks=[calibration,honesty]",
        "corruptions.names=[fog,smog]",
        "attacks.epsilons=[0.1,1.5]",
        "attacks.pgd_steps=0",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    for line in (
        "checks=['calibration', 'honesty']: must be a list of some of calibration, corruptions, attacks, attributions",
        "corruptions.names=['fog', 'smog']: must be all, or a list of some of shot_noise,",
        "attacks.epsilons=[0.1, 1.5]: must be a list of numbers in [0, 1]",
        "attacks.pgd_steps=0: must be an integer >= 1",
    ):
        assert line in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not (mnist_run.run / "trust").exists()


def test_a_checkpoint_of_another_data_set_is_refused(fashion_run, tmp_path):
    """What src.trust checks of every checkpoint before the first report starts (its exit 2 path is the one the bad
    settings above take)."""
    (target,) = find_targets(str(fashion_run.ckpt), tmp_path)
    loaded = load_checkpoint(target.ckpt)
    with pytest.raises(
        ConfigError, match=r"was trained on fashion_mnist \(10 classes\), not on mnist.*data=fashion_mnist"
    ):
        loaded.check_dataset(compose_config(config_name="trust").data.dataset)
    assert target.out == fashion_run.run / "trust" and not target.out.exists()


def test_an_unsafe_checkpoint_or_a_folder_without_runs_is_refused(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": CodePayload(tmp_path / "pwned")}, evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(find_targets(str(evil), tmp_path)[0].ckpt)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(CheckpointError, match="no training run with checkpoints"):
        find_targets(str(tmp_path), tmp_path)


def test_the_command_reports_into_the_run_folder_and_src_report_compares_it(mnist_run, tmp_path):
    from src.report.sweep import write_sweep_report as write_report

    sweep = tmp_path / "sweep"
    run = sweep / "0_seed=42"
    shutil.copytree(mnist_run.run, run)
    result = run_module(
        "src.trust",
        f"ckpt_path={sweep}",  # a folder of runs: each one's best checkpoint
        "limit=300",
        "attacks.pgd_steps=5",
        "attacks.epsilons=[0.1,0.3]",
        f"hydra.run.dir={tmp_path / 'trust_command'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run / "trust" / "trust.json").read_text())
    assert report["test_images"] == 300 and Path(report["ckpt_path"]).name == Path(mnist_run.ckpt).name
    assert set(report["seconds"]) == {"calibration", "corruptions", "attacks", "attributions"}
    assert len(report["corruptions"]["accuracy"]) == 15 and report["corruptions"]["source"] == "generated"
    assert report["attacks"]["accuracy"]["pgd"]["0.3"] <= report["attacks"]["accuracy"]["fgsm"]["0.3"]
    for picture in ("reliability", "corruptions", "attacks", "adversarial", "attributions"):
        assert (run / "trust" / f"{picture}.png").stat().st_size > 10_000, picture
    scalars = read_scalars(run / "trust")
    tags = set(scalars.Tags()["scalars"])
    assert {"trust/calibration/ece", "trust/corruptions/mean", "trust/attacks/pgd"} <= tags
    assert [e.step for e in scalars.Scalars("trust/attacks/pgd")] == [10, 30]  # epsilon in hundredths
    assert "calibration (15 bins): ECE" in result.stdout and "pgd: eps 0:" in result.stdout

    write_report(sweep)
    with open(sweep / "report.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["ece"]) == pytest.approx(report["calibration"]["ece"])
    assert float(row["pgd_acc@0.3"]) == pytest.approx(report["attacks"]["accuracy"]["pgd"]["0.3"])
    assert "## Trust per configuration" in (sweep / "report.md").read_text()

    # a report on the validation split (choosing a recipe) goes beside it, into trust_val/, and leaves it as it was
    result = run_module(
        "src.trust",
        f"ckpt_path={sweep}",
        "split=val",
        "checks=[attacks]",
        "attacks.methods=[pgd]",
        "attacks.epsilons=[0.1]",
        "attacks.pgd_steps=2",
        "limit=200",
        f"hydra.run.dir={tmp_path / 'trust_val_command'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    on_val = json.loads((run / "trust_val" / "trust.json").read_text())
    assert on_val["split"] == "val" and set(on_val["seconds"]) == {"attacks"}
    assert json.loads((run / "trust" / "trust.json").read_text()) == report


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_report_runs_on_the_gpu(mnist_run, tmp_path):
    shutil.copytree(mnist_run.run, tmp_path / "run")  # the report goes into the run folder: a copy of the session's
    result = run_module(
        "src.trust",
        f"ckpt_path={tmp_path / 'run'}",
        "accelerator=gpu",
        "limit=500",
        f"hydra.run.dir={tmp_path / 'cmd'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on cuda" in result.stdout


def test_adversarial_training_trains_on_pgd_examples_inside_the_ball(tmp_path, data_dir, cfg):
    """experiment=robust_mnist: each training batch is replaced by PGD examples within adversarial.epsilon of its
    images in pixel space; the padding stays black; and the recipe learns from them (with the default recipe's SGD
    one-cycle it stayed at chance, 0.12, where its Adam reaches 0.93 in 200 batches)."""
    import lightning as L
    from omegaconf import open_dict

    from src.training.build import build

    composed = cfg(
        "experiment=robust_mnist",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=150",
        "trainer.limit_val_batches=4",
        "test=false",
        "logger=[]",
        "callbacks=[]",
    )
    with open_dict(composed):
        composed.paths.output_dir = str(tmp_path)
        composed.trainer.enable_checkpointing = False
    # seeded as src.train seeds: unseeded, the weights came from whatever the worker's earlier tests left in the
    # generator, and 150 batches ended anywhere from 41% to 91% validation accuracy
    L.seed_everything(composed.seed, workers=True)
    datamodule, model, trainer = build(composed)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.callback_metrics["val/acc"] > 0.6, "experiment=robust_mnist does not learn from its PGD examples"
    x, y = next(iter(datamodule.train_dataloader()))
    preprocessing = datamodule.preprocessing
    adversarial = adversarial_batch(model.net, x, y, preprocessing, composed.adversarial)
    epsilon, pad, mean, std = composed.adversarial.epsilon, preprocessing.pad, preprocessing.mean, preprocessing.std
    moved = (adversarial - x) * std  # pixel units
    assert moved.abs().max() <= epsilon + 1e-5 and moved.abs().max() > 0.9 * epsilon
    assert torch.allclose(adversarial[..., :pad, :], torch.full_like(adversarial[..., :pad, :], -mean / std))
    with torch.no_grad():
        loss = lambda batch: float(F.cross_entropy(model(batch), y))  # noqa: E731
        assert loss(adversarial) > loss(x)  # the examples are harder than the batch
