"""One checkpoint's trust report: calibration, corruptions, attacks and attributions on its test set, written as
trust.json, PNGs and TensorBoard scalars into one folder. ``src.trust`` (the entry point) finds the checkpoints and the
folders; this module does the work for each.

Everything runs on [0, 1] pixels of the unpadded 28x28 images through ``PixelModel`` (padding and normalisation as in
training), in batches on the chosen device.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from src.data.datasets import first_of_each_class
from src.inference import LoadedCheckpoint
from src.models.stages import feature_stages
from src.plots import save
from src.trust import figures
from src.trust.attacks import PixelModel, fgsm, pgd, pgd_step_size
from src.trust.attributions import attribute, normalised
from src.trust.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability,
)
from src.trust.corruptions import corrupt, corruptions_for, official_corruption
from src.trust.settings import Settings

log = logging.getLogger(__name__)
Split = tuple[Tensor, Tensor]  # ([0, 1] images (N, 1, 28, 28), labels (N,)) on the device
TB_EPSILON_STEP = 100  # TensorBoard's step for an attack scalar: epsilon in hundredths (0.3 -> 30)


def logits_of(model: PixelModel, images: Tensor, batch_size: int) -> Tensor:
    with torch.inference_mode():
        return torch.cat([model(b) for b in images.split(batch_size)])


def accuracy(model: PixelModel, images: Tensor, labels: Tensor, batch_size: int) -> float:
    return float((logits_of(model, images, batch_size).argmax(dim=1) == labels).float().mean())


def epsilon_key(epsilon: float) -> str:
    return f"{epsilon:g}"


def check_calibration(
    model: PixelModel, val: Split, test: Split, s: Settings, out: Path, writer: Any
) -> dict[str, Any]:
    """ECE and NLL on the test set; the temperature fitted on the validation split (never the test set) and the
    same figures after dividing the logits by it."""
    val_logits, test_logits = logits_of(model, val[0], s.batch_size), logits_of(model, test[0], s.batch_size)
    temperature = fit_temperature(val_logits, val[1])
    scaled = test_logits / temperature
    result = {
        "bins": s.bins,
        "ece": expected_calibration_error(test_logits, test[1], s.bins),
        "nll": negative_log_likelihood(test_logits, test[1]),
        "temperature": temperature,
        "ece_scaled": expected_calibration_error(scaled, test[1], s.bins),
        "nll_scaled": negative_log_likelihood(scaled, test[1]),
        "val_nll": negative_log_likelihood(val_logits, val[1]),
        "val_nll_scaled": negative_log_likelihood(val_logits / temperature, val[1]),
        "mean_confidence": float(test_logits.softmax(dim=1).amax(dim=1).mean()),
    }
    before, after = reliability(test_logits, test[1], s.bins), reliability(scaled, test[1], s.bins)
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
    s: Settings,
    dataset: str,
    official_root: Path,
    classes: list[str],
    out: Path,
    writer: Any,
) -> dict[str, Any]:
    names = s.corruptions or corruptions_for(dataset)
    accuracy_of, sources, shown, shown_pred = {}, {}, {}, {}
    images, labels = test
    n = len(labels)
    k = min(s.corruptions_shown, n)
    with torch.inference_mode():
        shown["clean"], shown_pred["clean"] = images[:k], model(images[:k]).argmax(dim=1)
    for name in names:
        official = official_corruption(official_root, name) if s.source != "generated" and dataset == "mnist" else None
        if official is not None:
            corrupted, truth = official[0][:n].to(images.device), official[1][:n].to(images.device)
            sources[name] = "official"
        else:
            corrupted, truth = corrupt(name, images, s.seed), labels
            sources[name] = "generated"
        logits = logits_of(model, corrupted, s.batch_size)
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
        "seed": s.seed,
        "accuracy": accuracy_of,
        "mean": mean,
    }


def check_attacks(
    model: PixelModel, test: Split, clean: float, s: Settings, classes: list[str], out: Path, writer: Any
) -> dict[str, Any]:
    images, labels = test
    k = min(s.attacks_shown, len(labels))
    curves: dict[str, dict[str, float]] = {a: {"0": clean} for a in s.attacks}
    rows, row_pred = {"clean": images[:k]}, {}
    with torch.inference_mode():
        row_pred["clean"] = model(images[:k]).argmax(dim=1)
    for epsilon in s.epsilons:
        key = epsilon_key(epsilon)
        shown = None
        if "fgsm" in s.attacks:
            fooled = []
            for x, y in zip(images.split(s.batch_size), labels.split(s.batch_size)):
                adversarial = fgsm(model, x, y, epsilon)
                with torch.inference_mode():
                    fooled.append(model(adversarial).argmax(dim=1) != y)
                shown = adversarial[:k] if shown is None else shown
            curves["fgsm"][key] = 1 - float(torch.cat(fooled).float().mean())
        if "pgd" in s.attacks:
            g = torch.Generator(device=images.device)
            g.manual_seed(s.seed * 1_000_003 + zlib.crc32(key.encode()))
            step = pgd_step_size(epsilon, s.pgd_steps, s.pgd_step_size)
            fooled, first = [], None
            for x, y in zip(images.split(s.batch_size), labels.split(s.batch_size)):
                result = pgd(model, x, y, epsilon, s.pgd_steps, step, g)
                fooled.append(result.fooled)
                first = result.adversarial[:k] if first is None else first
            curves["pgd"][key] = 1 - float(torch.cat(fooled).float().mean())
            shown = first  # the stronger attack's images are the ones shown
        rows[f"eps {key}"] = shown
        with torch.inference_mode():
            row_pred[f"eps {key}"] = model(shown).argmax(dim=1)
        for name, curve in curves.items():
            writer.add_scalar(f"trust/attacks/{name}", curve[key], round(epsilon * TB_EPSILON_STEP))
    epsilons = [0.0, *s.epsilons]
    series = {name.upper(): [curve[epsilon_key(e)] for e in epsilons] for name, curve in curves.items()}
    title = f"L-infinity attacks ({s.pgd_steps}-step PGD)" if "pgd" in s.attacks else "FGSM"
    save(figures.accuracy_curve(epsilons, series, title), out / "attacks.png")
    save(figures.labelled_rows(rows, row_pred, labels[:k], classes), out / "adversarial.png")
    return {
        "clean": clean,
        "epsilons": s.epsilons,
        "accuracy": curves,
        "pgd_steps": s.pgd_steps,
        "pgd_step_size": s.pgd_step_size if s.pgd_step_size is not None else "2.5 * epsilon / pgd_steps",
        "pgd_random_start": True,
    }


def check_attributions(
    model: PixelModel, net: torch.nn.Module, test: Split, s: Settings, classes: list[str], out: Path
) -> dict[str, Any]:
    images, labels = test
    picked = first_of_each_class(labels.cpu(), range(len(classes)), s.attribution_images)
    x, y = images[picked], labels[picked]
    # Grad-CAM on the last conv stage's activation (conv2 in the classic network): the most class-specific maps
    layer, last_conv = next((name, module) for name, module in reversed(feature_stages(net)) if name.startswith("conv"))
    result = attribute(model, last_conv, x, s.attribution_methods, steps=s.ig_steps)
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
    s: Settings,
    out: Path,
    official_root: Path,
) -> dict[str, Any]:
    """Run the chosen checks on one checkpoint; ``val`` and ``test`` are (images in [0, 1], labels) on the device."""
    from torch.utils.tensorboard import SummaryWriter

    device = test[0].device
    net = loaded.net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)  # gradients are wanted with respect to the pixels only
    data = loaded.data
    model = PixelModel(net, data.pad, data.mean, data.std).eval()
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "ckpt_path": str(loaded.path),
        "dataset": data.dataset,
        "epoch": loaded.epoch,
        "split": s.split,
        "test_images": len(test[1]),
        "device": str(device),
        "accuracy": accuracy(model, *test, s.batch_size),
        "seconds": {},
    }
    writer = SummaryWriter(str(out))
    try:
        for check in s.checks:
            start = time.perf_counter()
            if check == "calibration":
                report[check] = check_calibration(model, val, test, s, out, writer)
            elif check == "corruptions":
                report[check] = check_corruptions(
                    model, test, s, data.dataset, official_root, data.classes, out, writer
                )
            elif check == "attacks":
                report[check] = check_attacks(model, test, report["accuracy"], s, data.classes, out, writer)
            elif check == "attributions":
                report[check] = check_attributions(model, net, test, s, data.classes, out)
            report["seconds"][check] = round(time.perf_counter() - start, 2)
            log.info("%s: %s done in %.1f s", loaded.path, check, report["seconds"][check])
    finally:
        writer.close()
    (out / "trust.json").write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict[str, Any]) -> str:
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
