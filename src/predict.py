"""Classify your own images: ``python -m src.predict ckpt_path=<checkpoint> inputs=[a.png,b.jpg]`` (or a folder).

Each image (any size, colour or grayscale, dark-on-light or light-on-dark) is brought to the training format
the way MNIST was made (``src.data.images.to_mnist_format``), then normalised with the checkpoint's preprocessing.
Prints the predicted class and the top-k probabilities per image; writes predictions.csv (and inputs.png, the
images as the model sees them) into its run folder (outputs/predict/<date>/<time>_<pid>).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from src.core.entry_point import hydra_entry_point
from src.core.plots import image_grid, save
from src.core.settings import as_list, check, flag, integer, required
from src.data.images import list_images, prepare_image
from src.models import outputs
from src.training.checkpoints import load_checkpoint

USAGE = "python -m src.predict ckpt_path=<checkpoint> inputs=[a.png,b.jpg] (or inputs=<folder>)"
RULES = [integer("top_k", 1), integer("max_pixels", 1), flag("save_inputs")]


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    check(cfg, RULES, required("ckpt_path", USAGE), required("inputs", USAGE))
    top_k, max_pixels = cfg.top_k, cfg.max_pixels
    paths = list_images(as_list(cfg.inputs))  # every path is checked before the model is loaded
    loaded = load_checkpoint(cfg.ckpt_path)
    # All images are read and checked first: one bad file stops the run before anything is written.
    prepared = [prepare_image(p, loaded.preprocessing, max_pixels) for p in paths]
    batch = torch.stack([x for x, _ in prepared])
    with torch.no_grad():
        probs = outputs.probabilities(loaded.net, loaded.net(batch))  # LeNet1998's leave the rubbish class out
    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)

    classes = loaded.classes
    rows = []
    for path, ps, idx in zip(paths, top_p.tolist(), top_i.tolist()):
        row: dict[str, Any] = {"path": str(path), "prediction": classes[idx[0]], "index": idx[0], "probability": ps[0]}
        for rank, (p, i) in enumerate(zip(ps, idx), start=1):
            row[f"top{rank}_class"], row[f"top{rank}_prob"] = classes[i], p
        rows.append(row)
        ranked = ", ".join(f"{classes[i]} {p:.3f}" for p, i in zip(ps, idx))
        print(f"{path}: {classes[idx[0]]}  (top-{k}: {ranked})")

    out = Path(cfg.paths.output_dir)
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if cfg.get("save_inputs", True):
        save_inputs_grid([digit for _, digit in prepared], [r["prediction"] for r in rows], out / "inputs.png")
    print(f"Wrote predictions.csv for {len(rows)} image(s) to {out}")
    return rows


def save_inputs_grid(digits: list[np.ndarray], labels: list[str], path: Path, limit: int = 64) -> None:
    """The first images as the model sees them (28x28, MNIST layout), titled with their predictions."""
    save(image_grid(digits[:limit], labels[:limit]), path)


main = hydra_entry_point(predict, "predict")


if __name__ == "__main__":
    main()
