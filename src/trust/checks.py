"""One checkpoint's trust report: the four checks (calibration, corruptions, attacks, attributions) on its test set,
written as trust.json, PNGs and TensorBoard scalars into one folder. ``python -m src.trust`` finds the checkpoints and
their folders; this module does the work for each, as the command's config (``conf/trust.yaml``, checked) asks.

Everything runs on [0, 1] pixels of the unpadded 28x28 images through ``PixelModel`` (the training preprocessing
inside it), in batches on the chosen device.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from src.core.plots import save
from src.core.settings import as_list
from src.data.datasets import first_of_each_class
from src.models.outputs import with_rubbish
from src.models.stages import feature_stages
from src.training.adversarial import PixelModel, pgd_step_size
from src.training.checkpoints import LoadedCheckpoint
from src.trust import figures
from src.trust.attacks import fgsm, pgd
from src.trust.attributions import attribute, normalised
from src.trust.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability,
)
from src.trust.corruptions import corrupt, corruptions_for, official_corruption

log = logging.getLogger(__name__)
MAPPED = ("C3", "C1")  # LeNet1998's conv stages whose maps are larger than 1x1
Split = tuple[Tensor, Tensor]  # ([0, 1] images (N, 1, 28, 28), labels (N,)) on the device
TB_EPSILON_STEP = 100  # TensorBoard's step for an attack scalar: epsilon in hundredths (0.3 -> 30)
CHECKS = ("calibration", "corruptions", "attacks", "attributions")
ATTACKS = ("fgsm", "pgd")


def chosen(cfg_value: object, valid: tuple[str, ...]) -> list[str]:
    """The items of a list setting that are among ``valid``, in ``valid``'s order, each once."""
    return [name for name in valid if name in as_list(cfg_value)]


def corruption_names(cfg: DictConfig, dataset: str) -> list[str]:
    """``corruptions.names``: all that suit the data set, or the ones listed (in their order, each once)."""
    names = cfg.corruptions.names
    return corruptions_for(dataset) if names == "all" else list(dict.fromkeys(as_list(names)))


def epsilons(cfg: DictConfig) -> list[float]:
    return sorted({float(e) for e in as_list(cfg.attacks.epsilons)})


def pgd_configured_step(cfg: DictConfig) -> float | None:
    return None if cfg.attacks.pgd_step_size is None else float(cfg.attacks.pgd_step_size)


def logits_of(model: PixelModel, images: Tensor, batch_size: int) -> Tensor:
    with torch.inference_mode():
        return torch.cat([model(b) for b in images.split(batch_size)])


def accuracy(model: PixelModel, images: Tensor, labels: Tensor, batch_size: int) -> float:
    return float((logits_of(model, images, batch_size).argmax(dim=1) == labels).float().mean())


def epsilon_key(epsilon: float) -> str:
    return f"{epsilon:g}"


def check_calibration(
    model: PixelModel, val: Split, test: Split, cfg: DictConfig, out: Path, writer: Any
) -> dict[str, Any]:
    """ECE and NLL on the test set; the temperature fitted on the validation split (never the test set) and the
    same figures after dividing the logits by it. LeNet1998's logits carry its rubbish class as a last column: its
    confidences are the model's own probabilities, and its NLL is its MAP criterion."""
    bins = cfg.calibration.bins
    val_logits, test_logits = (with_rubbish(model, logits_of(model, split[0], cfg.batch_size)) for split in (val, test))
    temperature = fit_temperature(val_logits, val[1])
    scaled = test_logits / temperature
    result = {
        "bins": bins,
        "ece": expected_calibration_error(test_logits, test[1], bins),
        "nll": negative_log_likelihood(test_logits, test[1]),
        "temperature": temperature,
        "ece_scaled": expected_calibration_error(scaled, test[1], bins),
        "nll_scaled": negative_log_likelihood(scaled, test[1]),
        "val_nll": negative_log_likelihood(val_logits, val[1]),
        "val_nll_scaled": negative_log_likelihood(val_logits / temperature, val[1]),
        "mean_confidence": float(test_logits.softmax(dim=1).amax(dim=1).mean()),
    }
    before, after = reliability(test_logits, test[1], bins), reliability(scaled, test[1], bins)
    result["reliability"] = {"before": before.__dict__, "after": after.__dict__}
    titles = (
        f"test set: ECE {result['ece']:.4f}, NLL {result['nll']:.4f}",
        f"temperature {temperature:.3f} (fit on validation): ECE {result['ece_scaled']:.4f}",
    )
    save(figures.reliability_figure(before, after, titles), out / "reliability.png")
    for key in ("ece", "ece_scaled", "nll", "nll_scaled", "temperature"):
        writer.add_scalar(f"trust/calibration/{key}", result[key], 0)
    return result


def check_corruptions(
    model: PixelModel,
    test: Split,
    cfg: DictConfig,
    dataset: str,
    official_root: Path,
    classes: list[str],
    out: Path,
    writer: Any,
) -> dict[str, Any]:
    names = corruption_names(cfg, dataset)
    accuracy_of, sources, shown, shown_pred = {}, {}, {}, {}
    images, labels = test
    n = len(labels)
    k = min(cfg.corruptions.shown, n)
    with torch.inference_mode():
        shown["clean"], shown_pred["clean"] = images[:k], model(images[:k]).argmax(dim=1)
    for name in names:
        use_official = cfg.corruptions.source != "generated" and dataset == "mnist"
        official = official_corruption(official_root, name) if use_official else None
        if official is not None:
            corrupted, truth = official[0][:n].to(images.device), official[1][:n].to(images.device)
            sources[name] = "official"
        else:
            corrupted, truth = corrupt(name, images, cfg.seed), labels
            sources[name] = "generated"
        logits = logits_of(model, corrupted, cfg.batch_size)
        accuracy_of[name] = float((logits.argmax(dim=1) == truth).float().mean())
        shown[name], shown_pred[name] = corrupted[:k], logits[:k].argmax(dim=1)
        writer.add_scalar(f"trust/corruptions/{name}", accuracy_of[name], 0)
    mean = sum(accuracy_of.values()) / len(accuracy_of)
    writer.add_scalar("trust/corruptions/mean", mean, 0)
    save(figures.labelled_rows(shown, shown_pred, labels[:k], classes), out / "corruptions.png")
    used = set(sources.values())
    return {
        "source": used.pop() if len(used) == 1 else "mixed",
        "sources": sources,
        "seed": cfg.seed,
        "accuracy": accuracy_of,
        "mean": mean,
    }


def check_attacks(
    model: PixelModel, test: Split, clean: float, cfg: DictConfig, classes: list[str], out: Path, writer: Any
) -> dict[str, Any]:
    images, labels = test
    attacks, radii, steps, batch = (
        chosen(cfg.attacks.methods, ATTACKS),
        epsilons(cfg),
        cfg.attacks.pgd_steps,
        cfg.batch_size,
    )
    k = min(cfg.attacks.shown, len(labels))
    curves: dict[str, dict[str, float]] = {a: {"0": clean} for a in attacks}
    rows, row_pred = {"clean": images[:k]}, {}
    with torch.inference_mode():
        row_pred["clean"] = model(images[:k]).argmax(dim=1)
    for epsilon in radii:
        key = epsilon_key(epsilon)
        shown = None
        if "fgsm" in attacks:
            fooled = []
            for x, y in zip(images.split(batch), labels.split(batch)):
                adversarial = fgsm(model, x, y, epsilon)
                with torch.inference_mode():
                    fooled.append(model(adversarial).argmax(dim=1) != y)
                shown = adversarial[:k] if shown is None else shown
            curves["fgsm"][key] = 1 - float(torch.cat(fooled).float().mean())
        if "pgd" in attacks:
            g = torch.Generator(device=images.device)
            g.manual_seed(cfg.seed * 1_000_003 + zlib.crc32(key.encode()))
            step = pgd_step_size(epsilon, steps, pgd_configured_step(cfg))
            fooled, first = [], None
            for x, y in zip(images.split(batch), labels.split(batch)):
                result = pgd(model, x, y, epsilon, steps, step, g)
                fooled.append(result.fooled)
                first = result.adversarial[:k] if first is None else first
            curves["pgd"][key] = 1 - float(torch.cat(fooled).float().mean())
            shown = first  # the stronger attack's images are the ones shown
        rows[f"eps {key}"] = shown
        with torch.inference_mode():
            row_pred[f"eps {key}"] = model(shown).argmax(dim=1)
        for name, curve in curves.items():
            writer.add_scalar(f"trust/attacks/{name}", curve[key], round(epsilon * TB_EPSILON_STEP))
    axis = [0.0, *radii]
    series = {name.upper(): [curve[epsilon_key(e)] for e in axis] for name, curve in curves.items()}
    title = f"L-infinity attacks ({steps}-step PGD)" if "pgd" in attacks else "FGSM"
    save(figures.accuracy_curve(axis, series, title), out / "attacks.png")
    save(figures.labelled_rows(rows, row_pred, labels[:k], classes), out / "adversarial.png")
    return {
        "clean": clean,
        "epsilons": radii,
        "accuracy": curves,
        "pgd_steps": steps,
        "pgd_step_size": pgd_configured_step(cfg) or "2.5 * epsilon / pgd_steps",
        "pgd_random_start": True,
    }


def check_attributions(
    model: PixelModel, net: torch.nn.Module, test: Split, cfg: DictConfig, classes: list[str], out: Path
) -> dict[str, Any]:
    images, labels = test
    picked = first_of_each_class(labels.cpu(), range(len(classes)), cfg.attributions.images)
    x, y = images[picked], labels[picked]
    # Grad-CAM on the last conv stage's activation with maps (conv2 in the classic network, C3 in LeNet1998, whose
    # C5 maps are 1x1): the most class-specific maps
    layer, last_conv = next(
        (name, module) for name, module in reversed(feature_stages(net)) if name.startswith("conv") or name in MAPPED
    )
    methods = list(dict.fromkeys(as_list(cfg.attributions.methods)))
    result = attribute(model, last_conv, x, methods, steps=cfg.attributions.steps)
    maps = {name: normalised(m) for name, m in result["maps"].items()}
    save(figures.attribution_figure(x, maps, result["predicted"], y, classes), out / "attributions.png")
    return {
        "methods": list(maps),
        "images": len(picked),
        "test_indices": picked,
        "grad_cam_layer": layer.split(" + ")[0],
    }


def trust_report(
    loaded: LoadedCheckpoint,
    val: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    cfg: DictConfig,
    out: Path,
    official_root: Path,
) -> dict[str, Any]:
    """Run the chosen checks on one checkpoint; ``val`` and ``test`` are (images in [0, 1], labels) on the device."""
    from torch.utils.tensorboard import SummaryWriter

    device = test[0].device
    net = loaded.net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)  # gradients are wanted with respect to the pixels only
    model = PixelModel(net, loaded.preprocessing).eval()
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "ckpt_path": str(loaded.path),
        "dataset": loaded.dataset,
        "epoch": loaded.epoch,
        "split": cfg.split,
        "test_images": len(test[1]),
        "device": str(device),
        "accuracy": accuracy(model, *test, cfg.batch_size),
        "seconds": {},
    }
    writer = SummaryWriter(str(out))
    try:
        for check in chosen(cfg.checks, CHECKS):
            start = time.perf_counter()
            if check == "calibration":
                report[check] = check_calibration(model, val, test, cfg, out, writer)
            elif check == "corruptions":
                report[check] = check_corruptions(
                    model, test, cfg, loaded.dataset, official_root, loaded.classes, out, writer
                )
            elif check == "attacks":
                report[check] = check_attacks(model, test, report["accuracy"], cfg, loaded.classes, out, writer)
            elif check == "attributions":
                report[check] = check_attributions(model, net, test, cfg, loaded.classes, out)
            report["seconds"][check] = round(time.perf_counter() - start, 2)
            log.info("%s: %s done in %.1f s", loaded.path, check, report["seconds"][check])
    finally:
        writer.close()
    (out / "trust.json").write_text(json.dumps(report, indent=2))
    return report


def trust_summary(report: dict[str, Any]) -> str:
    """The report's figures in a few lines, as the command prints them."""
    lines = [
        f"Checkpoint: {report['ckpt_path']} ({report['dataset']}, epoch {report['epoch']}, "
        f"{report['test_images']:,} {report['split']} images, on {report['device']})",
        f"  accuracy: {report['accuracy']:.4f}",
    ]
    if "calibration" in report:
        c = report["calibration"]
        lines.append(
            f"  calibration ({c['bins']} bins): ECE {c['ece']:.4f}, NLL {c['nll']:.4f}; temperature {c['temperature']:.3f}"
            f" (fit on validation): ECE {c['ece_scaled']:.4f}, NLL {c['nll_scaled']:.4f}"
        )
    if "corruptions" in report:
        c = report["corruptions"]
        worst = sorted(c["accuracy"].items(), key=lambda kv: kv[1])[:3]
        lines.append(
            f"  corruptions ({len(c['accuracy'])}, {c['source']}): mean accuracy {c['mean']:.4f}; lowest "
            + ", ".join(f"{k} {v:.4f}" for k, v in worst)
        )
    if "attacks" in report:
        a = report["attacks"]
        for name, curve in a["accuracy"].items():
            lines.append(f"  {name}: " + ", ".join(f"eps {k}: {v:.4f}" for k, v in curve.items()))
    if "attributions" in report:
        a = report["attributions"]
        lines.append(f"  attributions: {', '.join(a['methods'])} for {a['images']} test images")
    lines.append("  seconds: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()))
    return "\n".join(lines)
