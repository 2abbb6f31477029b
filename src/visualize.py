"""Look inside a trained LeNet-5: ``python -m src.visualize ckpt_path=<checkpoint> [classes=[Pullover,Coat]] [images=8]``
(or ``inputs=my_digits/`` for your own images).

Writes into its run folder (outputs/visualize/<date>/<time>_<pid>):
- ``filters_conv1.png``, ``filters_conv2.png``: the learned kernels of each conv layer, one colour scale per layer
  with white at zero;
- ``feature_maps/<n>_<image>.png``: per chosen image, its feature maps after each stage of ``net.features``
  (conv + activation, pooling, conv + activation, pooling), in the network's order, each stage titled with its shape;
- ``images.csv``: the chosen images, their true class (test images), the model's prediction and its probability, and
  each image's mean activation after every stage (the hidden layers' too);
- ``class_similarity.csv`` (test images of two or more classes): per stage, the correlation of each pair of classes'
  mean activations: where the network starts to tell, say, pullovers from coats;
- TensorBoard events: the penultimate layer's features of the test set (or a seeded subset) for the Projector tab,
  with each image as a sprite and its true and predicted class; with ``tensorboard=true`` the pictures in the Images tab.

Test images are chosen by class name (the first ``images`` test images of each class in ``classes``; all classes by
default); ``inputs=`` takes image files or folders instead, prepared exactly as ``src.predict`` prepares them.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from src.checks import Problems, is_int, require
from src.config import CONFIG_DIR
from src.data.datasets import class_indices, first_of_each_class
from src.errors import run_entry_point
from src.inference import DataStats, as_stored, list_images, load_checkpoint, load_test_split, prepare_image
from src.models.stages import conv_layers, feature_stages, hidden_stages, run_network

USAGE = "python -m src.visualize ckpt_path=<checkpoint> [classes=[Pullover,Coat]] [images=8] [inputs=my_digits/]"
EMBEDDING_TAG = "penultimate"  # the tensor's name in the Projector
METADATA_HEADER = ["true", "predicted", "correct", "test_index"]
BATCH = 1000  # test images per forward pass for the embedding


# -- config ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    classes: list[str | int]
    images: int
    inputs: list[str]
    max_pixels: int
    tensorboard: bool
    embedding_samples: int | None  # None: the whole test set
    embedding_seed: int


def read_settings(cfg: DictConfig) -> Settings:
    """The config's values, each checked before anything is loaded; all problems are reported at once."""
    plain = lambda v: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v  # noqa: E731
    as_list = lambda v: [] if v is None or v == "" else (list(v) if isinstance(v, list) else [v])  # noqa: E731
    classes, inputs = as_list(plain(cfg.get("classes"))), as_list(plain(cfg.get("inputs")))
    images, max_pixels, tensorboard = cfg.get("images"), cfg.get("max_pixels"), cfg.get("tensorboard")
    samples, seed = OmegaConf.select(cfg, "embedding.samples"), OmegaConf.select(cfg, "embedding.seed")
    problems = Problems(cfg)
    if not all((isinstance(c, str) and c.strip()) or is_int(c) for c in classes):
        problems.add(f"classes={classes!r}: must be class names (or indices), e.g. classes=[Pullover,Coat]")
    if classes and inputs:
        problems.add(
            f"classes={classes!r} and inputs={inputs!r}: give one of them (test images of those classes, or your images)"
        )
    problems.check("images", lambda v: is_int(v) and v >= 1, "must be an integer >= 1 (test images per class)")
    problems.check("max_pixels", lambda v: is_int(v) and v >= 1, "must be an integer >= 1")
    problems.check("tensorboard", lambda v: isinstance(v, bool), "must be true or false")
    problems.check(
        "embedding.samples",
        lambda v: v is None or (is_int(v) and v >= 0),
        "must be null (the whole test set), 0 (no embedding) or an integer > 0",
    )
    problems.check("embedding.seed", is_int, "must be an integer")
    problems.raise_if_any()
    return Settings(classes, images, [str(i) for i in inputs], max_pixels, tensorboard, samples, seed)


def embedding_indices(total: int, samples: int | None, seed: int) -> Tensor:
    """The test images shown in the Projector: all of them, or ``samples`` drawn with ``seed`` (sorted)."""
    if samples is None or samples >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:samples].sort().values


def slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "-", text).strip("-").lower() or "image"


# -- the command -----------------------------------------------------------------------------------------------------
@dataclass
class Chosen:
    """The images whose feature maps are drawn: model inputs, a name for each file and picture, and true labels."""

    x: Tensor  # (N, 1, 32, 32), normalised
    names: list[str]  # file stems: <n>_<class>_test<index> or <n>_<file stem>
    sources: list[str]  # test image index or path
    true: list[int | None]


def choose_test_images(
    test_x: Tensor, test_y: Tensor, class_indices: list[int], per_class: int, classes: list[str]
) -> Chosen:
    picked = first_of_each_class(test_y, class_indices, per_class)
    width = max(2, len(str(len(picked) - 1)))
    names = [f"{n:0{width}d}_{slug(classes[int(test_y[i])])}_test{i}" for n, i in enumerate(picked)]
    return Chosen(test_x[picked], names, [f"test #{i}" for i in picked], [int(test_y[i]) for i in picked])


def choose_inputs(paths: list[Path], prepared: list[Tensor]) -> Chosen:
    width = max(2, len(str(len(paths) - 1)))
    names = [f"{n:0{width}d}_{slug(p.stem)}" for n, p in enumerate(paths)]
    return Chosen(torch.stack(prepared), names, [str(p) for p in paths], [None] * len(paths))


def visualize(cfg: DictConfig) -> dict[str, Any]:
    from src.plots import feature_maps_figure, filter_grid, save

    ckpt_path = require(cfg, "ckpt_path", USAGE)
    settings = read_settings(cfg)
    paths = list_images(settings.inputs) if settings.inputs else []  # every path is checked before the model is loaded
    loaded = load_checkpoint(ckpt_path)
    data, classes = loaded.data, loaded.data.classes
    chosen_classes = class_indices(settings.classes, classes, data.dataset)  # before anything is computed or written
    # All images are read and checked first: one bad file stops the run before anything is written.
    prepared = [prepare_image(p, data, settings.max_pixels)[0] for p in paths]
    embed = settings.embedding_samples != 0
    test_x = test_y = None  # the test set is read only when needed: own images without an embedding need no data
    if not paths or embed:
        from src.data.datasets import IDX_LAYOUT

        test_x, test_y = load_test_split(cfg.paths.data_dir, data, IDX_LAYOUT["t10k-labels-idx1-ubyte"][1])
    chosen = (
        choose_inputs(paths, prepared)
        if paths
        else choose_test_images(test_x, test_y, chosen_classes, settings.images, classes)
    )

    out = Path(cfg.paths.output_dir)
    writer = None
    if settings.tensorboard or embed:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(out))  # events in the run folder: TensorBoard names the run by it

    def emit(fig: Any, tag: str, path: Path) -> None:
        if writer is not None and settings.tensorboard:
            writer.add_figure(tag, fig, global_step=0, close=False)
        save(fig, path)

    net = loaded.net
    for name, conv in conv_layers(net):
        emit(filter_grid(conv.weight, name), f"filters/{name}", out / f"filters_{name}.png")

    stages, hidden = feature_stages(net), hidden_stages(net)
    logits, outputs, _ = run_network(net, chosen.x, [module for _, module in stages + hidden])
    maps = outputs[: len(stages)]
    # each image's mean activation after every stage, the hidden units' too: how strongly an input (a test image,
    # noise, a picture of something else) drives each layer
    means = {name: out.flatten(1).mean(dim=1).tolist() for (name, _), out in zip(stages + hidden, outputs)}
    probs = torch.softmax(logits, dim=1)
    predicted = probs.argmax(dim=1).tolist()
    scales = [(float(m.min()), float(m.max())) for m in maps]  # one colour range per stage, shared by all images
    (out / "feature_maps").mkdir(exist_ok=True)
    rows = []
    for n, name in enumerate(chosen.names):
        true, pred, p = chosen.true[n], predicted[n], float(probs[n, predicted[n]])
        shown = f"true {classes[true]}, " if true is not None else ""
        title = f"{chosen.sources[n]}: {shown}predicted {classes[pred]} ({p:.0%})"
        figure = feature_maps_figure(chosen.x[n, 0], title, [(s, m[n]) for (s, _), m in zip(stages, maps)], scales)
        emit(figure, f"feature_maps/{name}", out / "feature_maps" / f"{name}.png")
        rows.append(
            {
                "picture": f"feature_maps/{name}.png",
                "source": chosen.sources[n],
                "true": classes[true] if true is not None else "",
                "predicted": classes[pred],
                "probability": p,
                **{f"mean {stage}": values[n] for stage, values in means.items()},
            }
        )
    with open(out / "images.csv", "w", newline="") as f:
        csv_writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        csv_writer.writeheader()
        csv_writer.writerows(rows)

    similarity = class_similarity(chosen, [(name, out) for (name, _), out in zip(stages + hidden, outputs)], classes)
    if similarity:
        with open(out / "class_similarity.csv", "w", newline="") as f:
            csv_writer = csv.DictWriter(f, fieldnames=list(similarity[0]))
            csv_writer.writeheader()
            csv_writer.writerows(similarity)

    summary: dict[str, Any] = {
        "ckpt_path": str(loaded.path),
        "dataset": data.dataset,
        "images": len(rows),
        "stages": [s for s, _ in stages],
        "filters": [n for n, _ in conv_layers(net)],
    }
    print(f"Checkpoint: {loaded.path} (trained on {data.dataset}, epoch {loaded.epoch})")
    if settings.classes:  # the names as the data set spells them, whatever the user typed (sweater: Pullover)
        print(f"  classes: {', '.join(classes[i] for i in chosen_classes)}")
    for name, conv in conv_layers(net):
        print(
            f"  filters_{name}.png: {name}'s {conv.out_channels} filters of {'x'.join(map(str, conv.weight.shape[1:]))}"
        )
    print(
        f"  feature_maps/: {len(rows)} image(s), maps after "
        + ", ".join(f"{s} ({'x'.join(map(str, m.shape[1:]))})" for (s, _), m in zip(stages, maps))
    )
    if similarity:
        print("  class_similarity.csv: the correlation of the classes' mean activations after each stage")
        for row in similarity:
            print(f"    {row['stage']}: {row['class_a']} vs {row['class_b']}: {row['correlation']:.3f}")
    if embed:
        summary["embedding"] = write_embedding(writer, net, test_x, test_y, data, settings)
        e = summary["embedding"]
        print(
            f"  Projector: {e['points']:,} test images x {e['dimensions']} features of the penultimate layer, "
            f"{e['misclassified']:,} misclassified (accuracy {e['accuracy']:.4f})"
        )
    if writer is not None:
        writer.close()
        tabs = " and ".join(tab for tab, shown in (("Images", settings.tensorboard), ("Projector", embed)) if shown)
        print(f"  TensorBoard ({tabs}): tensorboard --logdir {out}")
    print(f"Wrote the pictures and images.csv to {out}")
    return summary


def class_similarity(chosen: Chosen, outputs: list[tuple[str, Tensor]], classes: list[str]) -> list[dict[str, Any]]:
    """For test images of two or more classes: per stage and pair of classes, the Pearson correlation of the two
    classes' mean activation (over their chosen images, every unit of the stage). Near 1: the stage responds to both
    alike (it does not tell them apart yet); lower: it does."""
    shown = sorted({t for t in chosen.true if t is not None})
    if len(shown) < 2:
        return []
    true = torch.tensor([-1 if t is None else t for t in chosen.true])
    rows = []
    for stage, out in outputs:
        mean = {c: out[true == c].flatten(1).mean(dim=0) for c in shown}
        for i, a in enumerate(shown):
            for b in shown[i + 1 :]:
                correlation = torch.corrcoef(torch.stack([mean[a], mean[b]]))[0, 1]
                rows.append(
                    {"stage": stage, "class_a": classes[a], "class_b": classes[b], "correlation": float(correlation)}
                )
    return rows


def write_embedding(
    writer: Any, net: nn.Module, test_x: Tensor, test_y: Tensor, data: DataStats, settings: Settings
) -> dict[str, Any]:
    """The penultimate layer's features of the chosen test images, for TensorBoard's Projector, with each image as
    its sprite and its true class, predicted class, correctness and test index as metadata."""
    indices = embedding_indices(len(test_y), settings.embedding_samples, settings.embedding_seed)
    features, predicted = [], []
    for batch in indices.split(BATCH):
        logits, _, penultimate = run_network(net, test_x[batch])
        features.append(penultimate)
        predicted.append(logits.argmax(dim=1))
    features_t, predicted_t, true_t = torch.cat(features), torch.cat(predicted), test_y[indices]
    classes = data.classes
    metadata = [
        [classes[t], classes[p], "yes" if t == p else "no", i]
        for t, p, i in zip(true_t.tolist(), predicted_t.tolist(), indices.tolist())
    ]
    writer.add_embedding(
        features_t,
        metadata=metadata,
        label_img=as_stored(test_x[indices], data),
        global_step=0,
        tag=EMBEDDING_TAG,
        metadata_header=METADATA_HEADER,
    )
    wrong = int((predicted_t != true_t).sum())
    return {
        "points": len(indices),
        "dimensions": features_t.shape[1],
        "misclassified": wrong,
        "accuracy": 1.0 - wrong / len(indices),
    }


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="visualize")
def main(cfg: DictConfig) -> None:
    run_entry_point(visualize, cfg)


if __name__ == "__main__":
    main()
