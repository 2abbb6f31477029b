"""Look inside a trained LeNet-5: ``python -m src.visualize ckpt_path=<checkpoint> [classes=[Pullover,Coat]] [images=8]``
(or ``inputs=my_digits/`` for your own images).

Writes into its run folder (outputs/visualize/<date>/<time>_<pid>):
- ``filters_<layer>.png`` (``filters_conv1.png``, ``filters_conv2.png``; LeNet1998: ``filters_C1.png``,
  ``filters_C3.png``, ``filters_C5.png``): the learned kernels of each conv layer, one colour scale per layer with
  white at zero (C3's kernels that Table I does not connect left blank);
- ``table_1.png`` (LeNet1998 with its sparse C3): Table I, which S2 maps feed each C3 map, read from the trained C3
  itself, each connection coloured by its kernel's norm;
- ``subsampling.png`` (LeNet1998 with trainable S2 and S4): each map's trained coefficient and bias;
- ``feature_maps/<n>_<image>.png``: per chosen image, its feature maps after each stage of ``net.features``
  (conv + activation, pooling, conv + activation, pooling; LeNet1998: C1, S2, C3, S4, C5), in the network's order,
  each stage titled with its shape;
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from src.core.entry_point import hydra_entry_point
from src.core.plots import feature_maps_figure, filter_grid, save
from src.core.settings import Rule, as_list, check, flag, integer, is_int, required
from src.data.datasets import class_indices
from src.data.images import list_images, prepare_image
from src.models.stages import conv_layers, conv_weight, feature_stages, hidden_stages, run_network
from src.training.checkpoints import LoadedCheckpoint, load_checkpoint
from src.visualize.activations import class_similarity, mean_activations
from src.visualize.chosen_images import Chosen, choose_inputs, choose_test_images
from src.visualize.paper_layers import (
    connected,
    sparse_convs,
    subsampling_figure,
    subsampling_layers,
    table_1_figure,
)
from src.visualize.projector import embedding_indices, write_embedding

USAGE = "python -m src.visualize ckpt_path=<checkpoint> [classes=[Pullover,Coat]] [images=8] [inputs=my_digits/]"
RULES = [
    Rule(
        "classes",
        lambda v: all((isinstance(c, str) and c.strip()) or is_int(c) for c in as_list(v)),
        "must be class names (or indices), e.g. classes=[Pullover,Coat]",
    ),
    integer("images", 1, note="test images per class"),
    integer("max_pixels", 1),
    flag("tensorboard"),
    Rule(
        "embedding.samples",
        lambda v: v is None or (is_int(v) and v >= 0),
        "must be null (the whole test set), 0 (no embedding) or an integer > 0",
    ),
    integer("embedding.seed"),
]
Emit = Callable[[Any, str, Path], None]  # (figure, TensorBoard tag, file): where each picture goes


def one_source(cfg: DictConfig) -> list[str]:
    classes, inputs = as_list(cfg.get("classes")), as_list(cfg.get("inputs"))
    if classes and inputs:
        return [
            f"classes={classes!r} and inputs={inputs!r}: give one of them (test images of those classes, or your images)"
        ]
    return []


def visualize(cfg: DictConfig) -> dict[str, Any]:
    check(cfg, RULES, required("ckpt_path", USAGE), one_source)
    loaded, wanted, chosen, test = read_inputs(cfg)  # every input read and checked before anything is written
    out, embed = Path(cfg.paths.output_dir), cfg.embedding.samples != 0
    writer = None
    if cfg.tensorboard or embed:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(out))  # events in the run folder: TensorBoard names the run by it

    def emit(fig: Any, tag: str, path: Path) -> None:
        if writer is not None and cfg.tensorboard:
            writer.add_figure(tag, fig, global_step=0, close=False)
        save(fig, path)

    for name, conv in conv_layers(loaded.net):
        emit(filter_grid(conv_weight(conv), name, connected(conv)), f"filters/{name}", out / f"filters_{name}.png")
    summary = draw_feature_maps(emit, loaded, chosen, out)
    summary.update(draw_paper_layers(emit, loaded.net, out))
    if embed:
        indices = embedding_indices(len(test[1]), cfg.embedding.samples, cfg.embedding.seed)
        summary["embedding"] = write_embedding(writer, loaded.net, *test, loaded.classes, loaded.preprocessing, indices)
    if writer is not None:
        writer.close()
    print_summary(summary, loaded, wanted, cfg, out)
    return summary


def read_inputs(cfg: DictConfig) -> tuple[LoadedCheckpoint, list[int], Chosen, tuple[Tensor, Tensor] | None]:
    """The checkpoint, the classes asked for (by index), the chosen images (the user's files, or test images of those
    classes) and the test set (where the images or the Projector need it: own images without an embedding need no
    data)."""
    paths = list_images([str(i) for i in as_list(cfg.inputs)]) if as_list(cfg.inputs) else []  # before the model
    loaded = load_checkpoint(cfg.ckpt_path)
    wanted = class_indices(as_list(cfg.classes), loaded.classes, loaded.dataset)  # names checked before any work
    prepared = [prepare_image(p, loaded.preprocessing, cfg.max_pixels)[0] for p in paths]
    test = loaded.test_split(cfg.paths.data_dir) if not paths or cfg.embedding.samples != 0 else None
    chosen = choose_inputs(paths, prepared) if paths else choose_test_images(*test, wanted, cfg.images, loaded.classes)
    return loaded, wanted, chosen, test


def draw_feature_maps(emit: Emit, loaded: LoadedCheckpoint, chosen: Chosen, out: Path) -> dict[str, Any]:
    """Each chosen image's feature maps after every stage (one picture each), images.csv (its prediction and mean
    activation per stage) and class_similarity.csv; returns the command's summary."""
    net, classes = loaded.net, loaded.classes
    stages, hidden = feature_stages(net), hidden_stages(net)
    logits, outputs, _ = run_network(net, chosen.x, [module for _, module in stages + hidden])
    named = [(name, output) for (name, _), output in zip(stages + hidden, outputs)]
    maps = outputs[: len(stages)]
    means = mean_activations(named)
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
    write_csv(out / "images.csv", rows)
    similarity = class_similarity(chosen, named, classes)
    if similarity:
        write_csv(out / "class_similarity.csv", similarity)
    return {
        "ckpt_path": str(loaded.path),
        "dataset": loaded.dataset,
        "images": len(rows),
        "stages": [s for s, _ in stages],
        "stage_shapes": {s: list(m.shape[1:]) for (s, _), m in zip(stages, maps)},
        "filters": [n for n, _ in conv_layers(net)],
        "similarity": similarity,
    }


def draw_paper_layers(emit: Emit, net: torch.nn.Module, out: Path) -> dict[str, Any]:
    """LeNet1998's own pictures: ``table_1.png`` where C3 is sparse, ``subsampling.png`` where S2 and S4 are
    trainable; each summary entry is None where the network has no such layer (nothing is written)."""
    summary: dict[str, Any] = {"table_1": None, "subsampling": None}
    if sparse := sparse_convs(net):
        name, conv = sparse[0]
        emit(table_1_figure(conv, name), "table_1", out / "table_1.png")
        summary["table_1"] = {
            "file": "table_1.png",
            "layer": name,
            "connections": [list(inputs) for inputs in conv.connections],
        }
    if layers := subsampling_layers(net):
        emit(subsampling_figure(layers), "subsampling", out / "subsampling.png")
        summary["subsampling"] = {
            "file": "subsampling.png",
            "layers": {n: {"coefficient": m.weight.tolist(), "bias": m.bias.tolist()} for n, m in layers},
        }
    return summary


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def print_summary(
    summary: dict[str, Any], loaded: LoadedCheckpoint, wanted: list[int], cfg: DictConfig, out: Path
) -> None:
    print(f"Checkpoint: {loaded.path} (trained on {loaded.dataset}, epoch {loaded.epoch})")
    if as_list(cfg.classes):  # the names as the data set spells them, whatever the user typed (sweater: Pullover)
        print(f"  classes: {', '.join(loaded.classes[i] for i in wanted)}")
    for name, conv in conv_layers(loaded.net):
        shape = "x".join(map(str, conv_weight(conv).shape[1:]))
        print(f"  filters_{name}.png: {name}'s {conv.out_channels} filters of {shape}")
    if (table := summary["table_1"]) is not None:
        count = sum(map(len, table["connections"]))
        print(f"  table_1.png: Table I, which input maps feed each of {table['layer']}'s maps ({count} connections)")
    if (sub := summary["subsampling"]) is not None:
        layers = " and ".join(f"{n} ({len(v['coefficient'])} maps)" for n, v in sub["layers"].items())
        print(f"  subsampling.png: the trained coefficient and bias of each map of {layers}")
    maps = ", ".join(f"{s} ({'x'.join(map(str, shape))})" for s, shape in summary["stage_shapes"].items())
    print(f"  feature_maps/: {summary['images']} image(s), maps after {maps}")
    if summary["similarity"]:
        print("  class_similarity.csv: the correlation of the classes' mean activations after each stage")
        for row in summary["similarity"]:
            print(f"    {row['stage']}: {row['class_a']} vs {row['class_b']}: {row['correlation']:.3f}")
    if (e := summary.get("embedding")) is not None:
        print(
            f"  Projector: {e['points']:,} test images x {e['dimensions']} features of the penultimate layer, "
            f"{e['misclassified']:,} misclassified (accuracy {e['accuracy']:.4f})"
        )
    if cfg.tensorboard or "embedding" in summary:
        tabs = " and ".join(
            t for t, shown in (("Images", cfg.tensorboard), ("Projector", "embedding" in summary)) if shown
        )
        print(f"  TensorBoard ({tabs}): tensorboard --logdir {out}")
    print(f"Wrote the pictures and images.csv to {out}")


main = hydra_entry_point(visualize, "visualize")


if __name__ == "__main__":
    main()
