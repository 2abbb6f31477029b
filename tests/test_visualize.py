"""src.visualize and the filters callback, on checkpoints trained for a few batches on real MNIST and Fashion-MNIST.

The pictures' contents are checked on the figures themselves (in-process, from the same functions the command
uses); the command is run as a user runs it; the Projector's files are read back by a real TensorBoard server.
"""

from __future__ import annotations

import csv
import io
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.datasets import MNIST, FashionMNIST

from src.core.plots import feature_maps_figure, filter_grid, filter_mosaic
from src.models import build_network
from src.models.lenet1998 import LeNet1998, SparseConv, Subsampling
from src.models.stages import StageReader, conv_layers, conv_weight, feature_stages, hidden_stages, run_network
from src.training.checkpoints import load_checkpoint
from src.visualize.__main__ import draw_paper_layers
from src.visualize.paper_layers import connected, sparse_convs, subsampling_figure, subsampling_layers, table_1_figure
from src.visualize.projector import EMBEDDING_TAG, METADATA_HEADER, embedding_indices
from tests.conftest import TrainedRun
from tests.helpers import TensorBoardServer, read_scalars, run_module
from tests.test_inference import assert_clean_failure

CLASSIC_STAGES = ["conv1 + ReLU", "pool1 (MaxPool2d)", "conv2 + ReLU", "pool2 (MaxPool2d)"]
CLASSIC_SHAPES = [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5)]


@pytest.fixture(scope="module")
def runs(mnist_run: TrainedRun, fashion_run: TrainedRun) -> dict[str, Path]:
    """The session's trained runs, by data set: {data set: run folder}."""
    return {"mnist": mnist_run.run, "fashion_mnist": fashion_run.run}


@pytest.fixture(scope="module")
def lenet1998_run(lecun1998_run: TrainedRun) -> Path:
    """LeCun et al.'s (1998) network (C3 wired by Table I, trainable S2 and S4), the session's: its run folder."""
    return lecun1998_run.run


def checkpoint(run: Path) -> Path:
    return run / "checkpoints" / "last.ckpt"


def visualize(*overrides: str, log_dir: Path, env: dict[str, str] | None = None) -> tuple[Path | None, object]:
    """Run src.visualize as a user would, into ``log_dir``; (its run folder, the completed process)."""
    result = run_module("src.visualize", *overrides, f"paths.log_dir={log_dir}", env=env)
    # outputs/visualize/runs/<date>/<time>_<pid>, as every entry point
    folders = list(log_dir.glob("visualize/runs/*/*"))
    assert len(folders) <= 1, folders
    return (folders[0] if folders else None), result


def kernel_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.images]


# -- the pictures' contents --------------------------------------------------------------------------------------------
def test_filter_grids_show_every_kernel_of_each_conv_layer_on_one_scale(runs: dict[str, Path]):
    net = load_checkpoint(checkpoint(runs["mnist"])).net
    layers = conv_layers(net)
    assert [(name, tuple(conv.weight.shape)) for name, conv in layers] == [
        ("conv1", (6, 1, 5, 5)),
        ("conv2", (16, 6, 5, 5)),
    ]
    for name, conv in layers:
        fig = filter_grid(conv.weight, name)
        try:
            axes = kernel_axes(fig)
            weight = conv.weight.detach()
            assert len(axes) == weight.shape[0] * weight.shape[1]  # 6 and 16x6 kernels
            kernels = [ax.images[0].get_array() for ax in axes]
            assert all(k.shape == (5, 5) for k in kernels)
            # kernel by kernel, filter by filter then input channel by input channel, as in the weights
            assert np.allclose(np.stack(kernels), weight.reshape(-1, 5, 5).numpy())
            limit = float(weight.abs().max())
            assert {ax.images[0].get_clim() for ax in axes} == {
                (-limit, limit)
            }  # one scale, symmetric: 0 in the middle
            bar = next(ax for ax in fig.axes if not ax.images)
            assert "0" in [t.get_text() for t in bar.get_yticklabels()]
            assert f"{weight.shape[0]} filters of {weight.shape[1]}x5x5" in fig._suptitle.get_text()
        finally:
            plt.close(fig)


def test_stages_are_found_by_module_type_and_read_from_the_real_forward_pass(runs: dict[str, Path], data_dir: Path):
    loaded = load_checkpoint(checkpoint(runs["mnist"]))
    net = loaded.net
    x, _ = loaded.test_split(data_dir, 5)
    stages = feature_stages(net)
    assert [name for name, _ in stages] == CLASSIC_STAGES
    logits, maps, penultimate = run_network(net, x, [m for _, m in stages])
    assert [tuple(m.shape[1:]) for m in maps] == CLASSIC_SHAPES
    with torch.no_grad():  # the same network, module by module
        expected, h = [], x
        for module in net.features:
            h = module(h)
            if any(module is m for _, m in stages):
                expected.append(h)
        hidden = nn.Sequential(*list(net.classifier)[:-1])(net.features(x))
        assert all(torch.equal(m, e) for m, e in zip(maps, expected))
        assert penultimate.shape == (5, 84) and torch.allclose(penultimate, hidden)
        assert torch.allclose(logits, net(x))


def test_stages_of_a_batch_norm_tanh_network_are_named_by_what_lies_between():
    net = build_network({"activation": "tanh", "pooling": "avg", "batch_norm": True, "dropout": 0.5})
    stages = feature_stages(net)
    assert [name for name, _ in stages] == [
        "conv1 + BatchNorm2d + Tanh",
        "pool1 (AvgPool2d)",
        "conv2 + BatchNorm2d + Tanh",
        "pool2 (AvgPool2d)",
    ]
    net.train()  # run_network must switch to eval mode itself: batch norm and dropout then act as they predict
    x = torch.randn(3, 1, 32, 32)
    logits, _, penultimate = run_network(net, x, [m for _, m in stages])
    assert not net.training and penultimate.shape == (3, 84)
    with torch.no_grad():
        assert torch.allclose(logits, net(x))


def test_a_stage_reader_keeps_its_hooks_for_many_passes_and_reads_what_run_network_reads():
    """The demo's reader: hooks put on once, each pass's own stages (not those of passes made meanwhile without it),
    eval mode restored when a call finds the network training, and no hook left after close()."""
    net = build_network({"activation": "tanh", "pooling": "avg", "batch_norm": True, "dropout": 0.5})
    watch = [m for _, m in feature_stages(net) + hidden_stages(net)]
    hooked = [len(m._forward_hooks) for m in watch]
    xs = [torch.randn(1, 1, 32, 32) for _ in range(3)]
    with StageReader(net, watch) as read:
        assert [len(m._forward_hooks) for m in watch] == [n + 1 for n in hooked]
        for x in xs:
            run_network(net, torch.randn(5, 1, 32, 32), watch)  # another pass, which the reader's hooks also see
            net.train()
            logits, maps, penultimate = read(x)
            assert not net.training
            with torch.no_grad():  # the same network, module by module
                expected_maps, h = [], x
                for module in [*net.features, *net.classifier]:
                    if module is net.classifier[-1]:
                        expected_penultimate = h
                    h = module(h)
                    if any(module is m for m in watch):
                        expected_maps.append(h)
            assert torch.equal(logits, h) and torch.equal(penultimate, expected_penultimate)
            assert len(maps) == len(watch) and all(torch.equal(m, e) for m, e in zip(maps, expected_maps))
    assert [len(m._forward_hooks) for m in watch] == hooked
    assert not net.classifier[-1]._forward_pre_hooks


def test_a_feature_map_picture_shows_each_stage_in_order_with_its_shape(runs: dict[str, Path], data_dir: Path):
    loaded = load_checkpoint(checkpoint(runs["mnist"]))
    x, _ = loaded.test_split(data_dir, 2)
    stages = feature_stages(loaded.net)
    _, maps, _ = run_network(loaded.net, x, [m for _, m in stages])
    scales = [(float(m.min()), float(m.max())) for m in maps]
    fig = feature_maps_figure(x[1, 0], "test #1", [(s, m[1]) for (s, _), m in zip(stages, maps)], scales)
    try:
        titles = [sub._suptitle.get_text() for sub in fig.subfigs[1:]]
        assert [t.split("  (")[0] for t in titles] == [
            f"{s}: {c}@{h}x{w}" for s, (c, h, w) in zip(CLASSIC_STAGES, CLASSIC_SHAPES)
        ]
        for sub, m, (_low, high) in zip(fig.subfigs[1:], maps, scales):
            shown = kernel_axes(sub)
            assert len(shown) == m.shape[1]  # every map of the stage, in channel order
            assert np.allclose(np.stack([ax.images[0].get_array() for ax in shown]), m[1].numpy())
            assert {ax.images[0].get_clim()[1] for ax in shown} == {high}  # the range shared with the other images
        assert np.allclose(kernel_axes(fig.subfigs[0])[0].images[0].get_array(), x[1, 0].numpy())
    finally:
        plt.close(fig)


# -- the command -------------------------------------------------------------------------------------------------------
def test_chosen_classes_get_one_picture_each_and_the_same_pictures_in_tensorboard(
    runs: dict[str, Path], tmp_path: Path, data_dir: Path
):
    out, result = visualize(
        f"ckpt_path={checkpoint(runs['fashion_mnist'])}",
        "classes=[Pullover,coat]",
        "images=2",
        "tensorboard=true",
        "embedding.samples=0",
        log_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.fullmatch(r"\d\d-\d\d-\d\d_\d+", out.name), out

    labels = FashionMNIST(str(data_dir), train=False).targets
    pullovers, coats = (labels == 2).nonzero().flatten()[:2].tolist(), (labels == 4).nonzero().flatten()[:2].tolist()
    names = [
        f"00_pullover_test{pullovers[0]}",
        f"01_pullover_test{pullovers[1]}",
        f"02_coat_test{coats[0]}",
        f"03_coat_test{coats[1]}",
    ]
    assert sorted(p.stem for p in (out / "feature_maps").iterdir()) == names
    for png in [*(out / "feature_maps").iterdir(), out / "filters_conv1.png", out / "filters_conv2.png"]:
        with Image.open(png) as img:
            assert img.format == "PNG" and min(img.size) > 150, png

    loaded = load_checkpoint(checkpoint(runs["fashion_mnist"]))
    x, _ = loaded.test_split(data_dir, 100)
    with torch.no_grad():
        predicted = loaded.net(x[pullovers + coats]).argmax(1).tolist()
    with open(out / "images.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["picture"] for r in rows] == [f"feature_maps/{n}.png" for n in names]
    assert [r["true"] for r in rows] == ["Pullover", "Pullover", "Coat", "Coat"]
    assert [r["predicted"] for r in rows] == [loaded.classes[p] for p in predicted]

    # each image's mean activation per stage, and per stage the correlation of the two classes' mean activations,
    # recomputed here from the network's own layers
    stages = feature_stages(loaded.net) + hidden_stages(loaded.net)
    _, outputs, _ = run_network(loaded.net, x[pullovers + coats], [m for _, m in stages])
    for (stage, _), output in zip(stages, outputs):
        means = output.flatten(1).mean(dim=1).tolist()
        assert [float(r[f"mean {stage}"]) for r in rows] == pytest.approx(means, abs=1e-5)
    with open(out / "class_similarity.csv", newline="") as f:
        similarity = list(csv.DictReader(f))
    assert [(r["stage"], r["class_a"], r["class_b"]) for r in similarity] == [
        (stage, "Pullover", "Coat") for stage, _ in stages
    ]
    for row, output in zip(similarity, outputs):
        pullover, coat = output[:2].flatten(1).mean(0), output[2:].flatten(1).mean(0)
        expected = float(torch.corrcoef(torch.stack([pullover, coat]))[0, 1])
        assert float(row["correlation"]) == pytest.approx(expected, abs=1e-5) and -1 <= expected < 1

    images = set(read_scalars(out).Tags()["images"])
    assert images == {"filters/conv1", "filters/conv2", *(f"feature_maps/{n}" for n in names)}
    assert not (out / "projector_config.pbtxt").exists()  # embedding.samples=0: no Projector files


def test_the_projector_serves_the_penultimate_features_with_sprites_and_labels(
    runs: dict[str, Path], tmp_path: Path, data_dir: Path
):
    samples, seed = 300, 7
    out, result = visualize(
        f"ckpt_path={checkpoint(runs['mnist'])}",
        f"embedding.samples={samples}",
        f"embedding.seed={seed}",
        log_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the default spread: the first test image of each class, class by class
    labels = MNIST(str(data_dir), train=False).targets
    firsts = [int((labels == c).nonzero()[0]) for c in range(10)]
    assert [p.stem for p in sorted((out / "feature_maps").iterdir())] == [
        f"{c:02d}_{name}_test{i}"
        for c, (name, i) in enumerate(zip([re.sub(r"\W+", "-", n) for n in MNIST.classes], firsts))
    ]

    # What the Projector must show, computed here independently: the input of the last layer for the seeded subset.
    loaded = load_checkpoint(checkpoint(runs["mnist"]))
    indices = embedding_indices(10_000, samples, seed)
    assert len(set(indices.tolist())) == samples and torch.equal(indices, embedding_indices(10_000, samples, seed))
    x, y = loaded.test_split(data_dir, 10_000)
    with torch.no_grad():
        hidden = nn.Sequential(*list(loaded.net.classifier)[:-1])(loaded.net.features(x[indices]))
        predicted = loaded.net(x[indices]).argmax(1)

    run = out.relative_to(tmp_path / "visualize").as_posix()  # TensorBoard names a run by its folder under --logdir
    with TensorBoardServer(tmp_path / "visualize") as server:
        assert server.wait_for("/plugin/projector/runs", lambda runs: bool(runs)) == [run]
        info = server.get(f"/plugin/projector/info?run={run}")
        (embedding,) = info["embeddings"]
        name = embedding["tensorName"]
        assert name == f"{EMBEDDING_TAG}:00000" and embedding["tensorShape"] == [samples, 84]
        assert embedding["sprite"]["singleImageDim"] == [28, 28]

        query = f"?run={run}&name={name}"
        tensor = np.frombuffer(server.get(f"/plugin/projector/tensor{query}", raw=True), dtype=np.float32)
        assert np.allclose(tensor.reshape(samples, 84), hidden.numpy(), atol=1e-5)

        header, *rows = server.get(f"/plugin/projector/metadata{query}", raw=True).decode().splitlines()
        assert header.split("\t") == METADATA_HEADER and len(rows) == samples
        table = [r.split("\t") for r in rows]
        classes = loaded.classes
        assert [int(r[3]) for r in table] == indices.tolist()
        assert [r[0] for r in table] == [classes[t] for t in y[indices].tolist()]
        assert [r[1] for r in table] == [classes[p] for p in predicted.tolist()]
        assert [r[2] for r in table] == [
            "yes" if t == p else "no" for t, p in zip(y[indices].tolist(), predicted.tolist())
        ]

        sprite = Image.open(io.BytesIO(server.get(f"/plugin/projector/sprite_image{query}", raw=True)))
        side = math.ceil(math.sqrt(samples)) * 28
        assert sprite.size == (side, side)
        first = np.asarray(sprite.convert("L"))[:28, :28].astype(float)  # the first point's image: its test digit
        assert np.abs(first - MNIST(str(data_dir), train=False).data[int(indices[0])].numpy()).max() <= 1
    assert f"{samples:,} test images x 84 features" in result.stdout


def test_own_images_are_prepared_and_predicted_as_src_predict_does(
    runs: dict[str, Path], tmp_path: Path, data_dir: Path
):
    folder = tmp_path / "my_digits"
    folder.mkdir()
    for i, digit in enumerate(MNIST(str(data_dir), train=False).data[:3].numpy()):  # dark ink on white paper, larger
        Image.fromarray(255 - digit).resize((90, 90), Image.Resampling.BICUBIC).save(folder / f"digit {i}.png")
    ckpt = f"ckpt_path={checkpoint(runs['mnist'])}"
    no_data = {"DATA_DIR": str(tmp_path / "no-data-here")}  # own images without an embedding need no data set
    with ThreadPoolExecutor(max_workers=2) as pool:
        shown = pool.submit(
            visualize, ckpt, f"inputs={folder}/", "embedding.samples=0", log_dir=tmp_path / "v", env=no_data
        )
        predicted = pool.submit(
            run_module, "src.predict", ckpt, f"inputs=[{folder}]", f"hydra.run.dir={tmp_path / 'p'}"
        )
    (out, result), predict = shown.result(), predicted.result()
    assert result.returncode == 0, result.stderr[-3000:]
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert sorted(p.name for p in (out / "feature_maps").iterdir()) == [
        "00_digit-0.png",
        "01_digit-1.png",
        "02_digit-2.png",
    ]
    with open(out / "images.csv", newline="") as f:
        ours = {Path(r["source"]).name: r for r in csv.DictReader(f)}
    with open(tmp_path / "p" / "predictions.csv", newline="") as f:
        theirs = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert set(ours) == set(theirs) == {f"digit {i}.png" for i in range(3)}
    for name, row in ours.items():
        assert row["predicted"] == theirs[name]["prediction"] and row["true"] == ""
        assert float(row["probability"]) == pytest.approx(float(theirs[name]["probability"]), abs=1e-6)


def test_classes_are_taken_as_people_write_them(runs: dict[str, Path], tmp_path: Path):
    # d2l's exercise says "sweaters and coats": Fashion-MNIST's Pullover and Coat, shown by their own names
    out, result = visualize(
        f"ckpt_path={checkpoint(runs['fashion_mnist'])}",
        "classes=[Sweater,COATS,t-shirt]",
        "images=1",
        "embedding.samples=0",
        log_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "classes: Pullover, Coat, T-shirt/top" in result.stdout
    assert [p.stem.split("_")[1] for p in sorted((out / "feature_maps").iterdir())] == [
        "pullover",
        "coat",
        "t-shirt-top",
    ]


def test_a_misspelt_class_is_refused_naming_the_valid_ones(runs: dict[str, Path], tmp_path: Path):
    out, result = visualize(f"ckpt_path={checkpoint(runs['fashion_mnist'])}", "classes=[Sweatr,Coat]", log_dir=tmp_path)
    assert_clean_failure(
        result,
        "'Sweatr' is not a class of fashion_mnist",
        "valid: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot",
    )
    assert sorted(p.name for p in out.iterdir()) == [".hydra", "visualize.log"]  # nothing drawn, no events


def test_bad_values_are_refused_before_the_checkpoint_is_read(tmp_path: Path):
    _, result = visualize(
        f"ckpt_path={tmp_path / 'missing.ckpt'}",
        "images=0",
        "classes=[Coat]",
        "inputs=[a.png]",
        "tensorboard=maybe",
        "embedding.samples=-1",
        "embedding.seed=x",
        log_dir=tmp_path,
    )
    assert_clean_failure(
        result,
        "Invalid config",
        "images=0: must be an integer >= 1",
        "classes=['Coat'] and inputs=['a.png']: give one of them",
        "tensorboard='maybe'",
        "embedding.samples=-1",
        "embedding.seed='x'",
    )
    assert "missing.ckpt" not in result.stderr  # the config is checked first


def error_message(result) -> str:
    found = re.search(r"\[ERROR\] - (.*)", result.stderr)
    assert found, result.stderr[-3000:]
    return found.group(1)


def test_bad_checkpoints_and_images_get_the_same_errors_as_src_predict(runs: dict[str, Path], tmp_path: Path):
    good_ckpt, digit = checkpoint(runs["mnist"]), tmp_path / "digit.png"
    Image.fromarray(np.pad(np.full((10, 10), 255, np.uint8), 9)).save(digit)
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    (tmp_path / "text.png").write_text("not an image")
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    cases = {  # what is wrong: (ckpt_path, inputs)
        "missing checkpoint": (tmp_path / "missing.ckpt", digit),
        "not a checkpoint": (tmp_path / "notes.ckpt", digit),
        "missing image": (good_ckpt, tmp_path / "missing.png"),
        "not an image": (good_ckpt, tmp_path / "text.png"),
        "blank image": (good_ckpt, tmp_path / "blank.png"),
    }
    jobs = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for case, (ckpt, image) in cases.items():
            for module in ("src.predict", "src.visualize"):
                run = tmp_path / f"{case}_{module}".replace(" ", "_")
                jobs[case, module] = pool.submit(
                    run_module, module, f"ckpt_path={ckpt}", f"inputs=[{image}]", f"hydra.run.dir={run}"
                )
    for case in cases:
        predict, visual = jobs[case, "src.predict"].result(), jobs[case, "src.visualize"].result()
        assert_clean_failure(predict)
        assert_clean_failure(visual)
        assert error_message(visual) == error_message(predict), case
    assert "shows nothing" in error_message(jobs["blank image", "src.visualize"].result())
    assert "not an image" in error_message(jobs["not an image", "src.visualize"].result())


# -- LeCun et al.'s (1998) own layers: Table I and the sub-sampling coefficients ---------------------------------------
def table_cells(fig) -> np.ndarray:
    """The filled cells of a Table I picture, (input maps, output maps): where its image is not masked out."""
    (image,) = kernel_axes(fig)[0].images
    return ~np.ma.getmaskarray(image.get_array())


def test_table_1_is_drawn_from_the_modules_own_connections():
    conv = LeNet1998().features.C3
    fig = table_1_figure(conv)
    try:
        cells = table_cells(fig)
        expected = np.zeros((6, 16), dtype=bool)  # rows: S2's maps, columns: C3's, as in the paper
        for out, inputs in enumerate(conv.connections):
            expected[list(inputs), out] = True
        assert cells.shape == (6, 16) and np.array_equal(cells, expected)
        # Table I's 60 connections: six C3 maps fed by 3 S2 maps, six by 4, three by 4 more, the last by all 6
        assert cells.sum() == 60 and cells.sum(axis=0).tolist() == [3] * 6 + [4] * 6 + [4] * 3 + [6]
        # each connected cell coloured by its trained kernel's norm
        norms = conv.dense_weight().detach().flatten(2).norm(dim=2).T.numpy()
        assert np.allclose(kernel_axes(fig)[0].images[0].get_array()[cells], norms[cells])
        assert "Table I of LeCun et al. (1998)" in fig._suptitle.get_text()
        assert [t.get_text() for t in kernel_axes(fig)[0].get_xticklabels()] == [str(m) for m in range(16)]
        assert [t.get_text() for t in kernel_axes(fig)[0].get_yticklabels()] == [str(m) for m in range(6)]
    finally:
        plt.close(fig)
    # another wiring is drawn as that module has it: the picture reads the module, not a copy of the table
    other = SparseConv([(5,), (0, 2), (1, 3, 4)], in_channels=6)
    nn.init.normal_(other.weight)
    fig = table_1_figure(other)
    try:
        assert np.argwhere(table_cells(fig)).tolist() == [[0, 1], [1, 2], [2, 1], [3, 2], [4, 2], [5, 0]]
    finally:
        plt.close(fig)


def test_the_ablations_of_c3_and_subsampling_get_neither_picture(tmp_path: Path):
    net = LeNet1998(c3="full", subsampling="average")
    drawn = []
    summary = draw_paper_layers(lambda fig, tag, path: drawn.append(path), net, tmp_path)
    assert drawn == [] and summary == {"table_1": None, "subsampling": None}
    assert sparse_convs(net) == [] and subsampling_layers(net) == []
    assert [name for name, conv in conv_layers(net) if connected(conv) is not None] == []  # C3's every kernel shown


def test_subsampling_shows_each_maps_trained_coefficient_and_bias(lenet1998_run: Path):
    net = load_checkpoint(checkpoint(lenet1998_run)).net
    layers = subsampling_layers(net)
    assert [(name, len(layer.weight)) for name, layer in layers] == [("S2", 6), ("S4", 16)]
    assert all(isinstance(layer, Subsampling) for _, layer in layers)
    fig = subsampling_figure(layers)
    try:
        axes = [ax for ax in fig.axes if ax.patches]
        assert len(axes) == 4  # S2's coefficients and biases, then S4's
        for ax, (name, values) in zip(axes, [(name, v) for name, layer in layers for v in (layer.weight, layer.bias)]):
            heights = [bar.get_height() for bar in ax.patches]
            assert heights == pytest.approx(values.detach().tolist(), abs=1e-6)
            assert [t.get_text() for t in ax.get_xticklabels()] == [str(m) for m in range(len(values))]
            assert ax.get_xlabel() == f"{name} map"
    finally:
        plt.close(fig)


def test_lenet1998_filter_grids_leave_table_1s_unconnected_kernels_blank(lenet1998_run: Path):
    net = load_checkpoint(checkpoint(lenet1998_run)).net
    layers = dict(conv_layers(net))
    assert list(layers) == ["C1", "C3", "C5"]
    c3 = layers["C3"]
    fig = filter_grid(conv_weight(c3), "C3", connected(c3))
    try:
        axes = kernel_axes(fig)
        assert len(axes) == 60  # Table I's kernels only, row by row as the dense weight holds them
        wired = [(o, i) for o in range(16) for i in range(6) if i in c3.connections[o]]
        dense = c3.dense_weight().detach()
        assert np.allclose(np.stack([ax.images[0].get_array() for ax in axes]), np.stack([dense[k] for k in wired]))
        assert "60 of 96 kernels connected" in fig._suptitle.get_text()
    finally:
        plt.close(fig)
    c5 = conv_weight(layers["C5"]).detach()
    fig = filter_grid(c5, "C5")  # 120 x 16 kernels: one mosaic image, filter_mosaic's
    try:
        (ax,) = kernel_axes(fig)
        assert np.array_equal(ax.images[0].get_array(), filter_mosaic(c5, 10, 2)[0])
        assert "120 filters of 16x5x5" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_a_lenet1998_checkpoint_gets_table_1_and_its_subsampling_coefficients(lenet1998_run: Path, tmp_path: Path):
    out, result = visualize(
        f"ckpt_path={checkpoint(lenet1998_run)}",
        "classes=[3]",
        "images=1",
        "tensorboard=true",
        "embedding.samples=0",
        log_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pictures = ["filters_C1.png", "filters_C3.png", "filters_C5.png", "table_1.png", "subsampling.png"]
    for name in pictures:
        with Image.open(out / name) as img:
            assert img.format == "PNG" and min(img.size) > 150, name
    assert "table_1.png: Table I, which input maps feed each of C3's maps (60 connections)" in result.stdout
    assert "subsampling.png: the trained coefficient and bias of each map of S2 (6 maps) and S4 (16 maps)" in (
        result.stdout
    )
    images = set(read_scalars(out).Tags()["images"])
    assert {"filters/C1", "filters/C3", "filters/C5", "table_1", "subsampling"} <= images


def test_a_lenet5_checkpoint_gets_neither_table_1_nor_subsampling(runs: dict[str, Path], tmp_path: Path):
    out, result = visualize(
        f"ckpt_path={checkpoint(runs['mnist'])}", "classes=[3]", "images=1", "embedding.samples=0", log_dir=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "filters_conv1.png").is_file() and (out / "filters_conv2.png").is_file()
    assert not (out / "table_1.png").exists() and not (out / "subsampling.png").exists()
    assert "table_1.png" not in result.stdout and "subsampling.png" not in result.stdout


# -- the callback ------------------------------------------------------------------------------------------------------
def test_training_logs_the_first_layer_filters_at_the_start_and_after_each_epoch(runs: dict[str, Path]):
    events = read_scalars(runs["mnist"])
    logged = events.Images("filters/conv1")
    # one epoch: before the first step, and after the epoch's last (the checkpoint's global step)
    steps_in_epoch = torch.load(checkpoint(runs["mnist"]), map_location="cpu", weights_only=False)["global_step"]
    assert steps_in_epoch == math.ceil(55_000 / 128)  # fast_mnist: 55,000 training images in batches of 128
    assert [e.step for e in logged] == [0, steps_in_epoch]
    first, last = (np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB")) for e in logged)
    # after the epoch: exactly the kernels the run saved at its end, in filter_grid's colours
    weight = conv_layers(load_checkpoint(checkpoint(runs["mnist"])).net)[0][1].weight.detach()
    expected, limit = filter_mosaic(weight)
    assert first.shape == last.shape == expected.shape == (68, 388, 3) and np.array_equal(last, expected)
    assert (
        [round(s.value, 6) for s in events.Scalars("filters/conv1_max_abs")][-1]
        == round(float(weight.abs().max()), 6)
        == round(limit, 6)
    )


def test_the_filter_mosaic_has_filter_grids_layout_and_colours():
    weight = torch.zeros(6, 1, 5, 5)
    weight[0, 0, 0, 0], weight[1, 0, 4, 4] = 1.0, -0.5  # filter 1: one full-red pixel; filter 2: one half-blue pixel
    image, limit = filter_mosaic(weight, pixels_per_kernel=10, gap=2)
    assert limit == 1.0 and image.shape == (2 + 1 * (10 + 2), 2 + 6 * (10 + 2), 3)
    fig = filter_grid(weight, "conv1")
    try:
        cmap, norm = kernel_axes(fig)[0].images[0].cmap, kernel_axes(fig)[0].images[0].norm
        colour = lambda v: list(cmap(norm(v), bytes=True)[:3])  # noqa: E731
        assert image[2, 2].tolist() == colour(1.0)  # filter 1's top-left pixel, as filter_grid colours it
        assert image[2 + 9, 2 + 12 + 9].tolist() == colour(-0.5)  # filter 2's bottom-right pixel
        assert image[7, 7].tolist() == colour(0.0) and image[0, 0].tolist() == [160, 160, 160]  # zero; a gap
    finally:
        plt.close(fig)
