"""Classify your own images: ``python -m src.predict ckpt_path=<checkpoint> inputs=[a.png,b.jpg]`` (or a folder).

Each image (any size, colour or grayscale, dark-on-light or light-on-dark) is brought to the training format
the way MNIST was made (``src.inference.to_mnist_format``), then normalised with the checkpoint's statistics.
Prints the predicted class and the top-k probabilities per image; writes predictions.csv (and inputs.png, the
images as the model sees them) into its run folder (outputs/predict/<date>/<time>_<pid>).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from src.checks import Problems, is_int, require
from src.config import CONFIG_DIR
from src.errors import run_entry_point
from src.inference import list_images, load_checkpoint, prepare_image


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    ckpt_path = require(cfg, "ckpt_path", "python -m src.predict ckpt_path=<checkpoint> inputs=[a.png,b.jpg]")
    inputs = require(
        cfg, "inputs", "python -m src.predict ckpt_path=<checkpoint> inputs=[a.png,b.jpg] (or inputs=<folder>)"
    )
    inputs = OmegaConf.to_container(inputs) if OmegaConf.is_config(inputs) else inputs
    problems = Problems(cfg)
    for key in ("top_k", "max_pixels"):
        problems.check(key, lambda v: is_int(v) and v >= 1, "must be an integer >= 1")
    problems.raise_if_any()
    top_k, max_pixels = cfg.top_k, cfg.max_pixels

    paths = list_images(inputs)  # every path is checked before the model is loaded
    loaded = load_checkpoint(ckpt_path)
    # All images are read and checked first: one bad file stops the run before anything is written.
    prepared = [prepare_image(p, loaded.data, max_pixels) for p in paths]
    batch = torch.stack([x for x, _ in prepared])
    with torch.no_grad():
        probs = torch.softmax(loaded.net(batch), dim=1)
    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)

    classes = loaded.data.classes
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
    from src.plots import image_grid, save

    save(image_grid(digits[:limit], labels[:limit]), path)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    run_entry_point(predict, cfg)


if __name__ == "__main__":
    main()
