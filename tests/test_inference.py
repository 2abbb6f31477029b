"""Evaluate, summarise, predict and export, each run as a subprocess on one checkpoint trained on real MNIST.

Run with ``-s`` to see the measured figures (prediction agreement per image form, export differences).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import MNIST

from src.core.errors import CheckpointError, ImageError
from src.data.datamodule import MNISTDataModule
from src.data.images import ink_box, ink_crop, prepare_image, read_grayscale, to_mnist_format
from src.training.checkpoints import load_checkpoint
from tests.conftest import TrainedRun
from tests.helpers import CodePayload, run_module, tiny_png_claiming

N_DIGITS = 100  # MNIST test digits per image form in the prediction test
MIN_AGREEMENT = 0.90


@pytest.fixture(scope="module")
def trained(mnist_run: TrainedRun) -> dict:
    """The session's MNIST checkpoint: one full epoch of the fast recipe (~98% test accuracy)."""
    return {"run": mnist_run.run, "ckpt": mnist_run.ckpt, "test_acc": mnist_run.test_acc}


@pytest.fixture(scope="module", params=["lenet5", "lenet5_1998"])
def either_network(request: pytest.FixtureRequest) -> dict:
    """The session's MNIST checkpoint, then LeCun et al.'s network's: the tools work on both alike."""
    run = request.getfixturevalue("mnist_run" if request.param == "lenet5" else "lecun1998_run")
    return {"run": run.run, "ckpt": run.ckpt, "test_acc": run.test_acc}


def assert_clean_failure(result, *fragments: str) -> None:
    """A user error: exit status 2, the message on stderr, no traceback."""
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr[-3000:]}"


# -- eval ------------------------------------------------------------------------------------------------------------
def test_eval_reproduces_the_logged_test_accuracy(either_network: dict, tmp_path: Path):
    trained = either_network
    result = run_module("src.eval", f"ckpt_path={trained['ckpt']}", f"paths.log_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list(tmp_path.glob("eval/runs/*/*"))  # outputs/eval/runs/<date>/<time>_<pid>, as every entry point
    assert len(runs) == 1 and re.fullmatch(r"\d\d-\d\d-\d\d_\d+", runs[0].name), runs
    out = runs[0]
    metrics = json.loads((out / "metrics.json").read_text())
    print(f"\neval test/acc={metrics['test/acc']:.6f}, train's logged test/acc={trained['test_acc']:.6f}")
    assert metrics["test/acc"] == pytest.approx(trained["test_acc"], abs=1e-4)
    assert metrics["total"] == 10_000 and metrics["correct"] == round(metrics["test/acc"] * 10_000)

    # the printed report: loss, accuracy, one row per class with its name
    assert f"test/acc  = {metrics['test/acc']:.4f}" in result.stdout and "test/loss = " in result.stdout
    for name in MNIST.classes:
        assert re.search(rf"^{re.escape(name)}\s+[\d,]+\s+[\d,]+\s+[01]\.\d{{4}}$", result.stdout, re.M), name
    per_class = metrics["per_class"]
    assert sum(r["total"] for r in per_class) == 10_000 and sum(r["correct"] for r in per_class) == metrics["correct"]

    for png in ("confusion_matrix.png", "misclassified.png"):
        with Image.open(out / png) as img:
            assert img.format == "PNG" and min(img.size) > 300


def test_eval_reads_the_training_split_the_checkpoint_trained_on(either_network: dict, tmp_path: Path, data_dir: Path):
    """split=train: the images the run trained on (55,000 for the fast recipe, which held 5,000 out; all 60,000 for
    LeCun et al.'s), in order, undistorted, through the same test step: the network's own accuracy on them."""
    loaded = load_checkpoint(either_network["ckpt"])
    val_size = loaded.data_hparams["val_size"]
    result = run_module("src.eval", f"ckpt_path={either_network['ckpt']}", "split=train", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["split"] == "train" and "test/acc" not in metrics
    assert metrics["total"] == 60_000 - val_size and f"train/acc  = {metrics['train/acc']:.4f}" in result.stdout
    assert f"/ {60_000 - val_size:,} training images" in result.stdout

    datamodule = MNISTDataModule(
        data_dir=str(data_dir), val_size=val_size, split_seed=loaded.data_hparams["split_seed"]
    )
    datamodule.prepare_data()
    datamodule.setup()
    images, labels = datamodule.split("train")
    with torch.no_grad():
        x = loaded.preprocessing.normalize_(images.float())
        predicted = torch.cat([loaded.net(batch).argmax(dim=1) for batch in x.split(1000)])
    correct = int((predicted == labels).sum())
    print(
        f"\nsplit=train: {metrics['correct']:,} of {metrics['total']:,} right; the network on the same images: {correct:,}"
    )
    assert metrics["correct"] == correct and metrics["train/acc"] == pytest.approx(correct / len(labels), abs=1e-6)
    assert [r["total"] for r in metrics["per_class"]] == torch.bincount(labels, minlength=10).tolist()
    if val_size:  # split=val: the images the run held out and validated on
        result = run_module("src.eval", f"ckpt_path={either_network['ckpt']}", "split=val", f"hydra.run.dir={tmp_path}")
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        images, labels = datamodule.split("val")
        with torch.no_grad():
            predicted = loaded.net(loaded.preprocessing.normalize_(images.float())).argmax(dim=1)
        assert metrics["split"] == "val" and metrics["total"] == val_size == len(labels)
        assert metrics["correct"] == int((predicted == labels).sum()) and "val/acc  = " in result.stdout


def test_eval_refuses_a_validation_split_that_the_checkpoint_never_held_out(lecun1998_run: TrainedRun, tmp_path: Path):
    result = run_module("src.eval", f"ckpt_path={lecun1998_run.ckpt}", "split=val", f"hydra.run.dir={tmp_path}")
    assert_clean_failure(result, "split=val", "data.val_size=0", "no validation split", "choose one of test, train")
    result = run_module("src.eval", f"ckpt_path={lecun1998_run.ckpt}", "split=training", f"hydra.run.dir={tmp_path}")
    assert_clean_failure(result, "split", "training", "test, train, val")
    assert not (tmp_path / "metrics.json").exists()


def test_eval_refuses_a_checkpoint_of_another_data_set(trained: dict, tmp_path: Path):
    result = run_module("src.eval", f"ckpt_path={trained['ckpt']}", "data=fashion_mnist", f"hydra.run.dir={tmp_path}")
    assert_clean_failure(result, "was trained on mnist", "not on fashion_mnist", "data=mnist")
    assert not (tmp_path / "metrics.json").exists()


# -- summary ---------------------------------------------------------------------------------------------------------
def test_summary_prints_the_layer_table_without_data(tmp_path: Path):
    result = run_module("src.summary", f"hydra.run.dir={tmp_path}", env={"DATA_DIR": str(tmp_path / "no-data-here")})
    assert result.returncode == 0, result.stderr[-3000:]
    # Lightning's ModelSummary: | name | type | params | mode | FLOPs | in sizes | out sizes
    rows = [[c.strip() for c in line.split("|")] for line in result.stdout.splitlines() if " | net." in line]
    layers = {r[1]: r for r in rows}
    outs = [r[-1] for r in rows if r[2] in ("Conv2d", "MaxPool2d", "Flatten", "Linear")]
    assert outs == [
        "[1, 6, 28, 28]",
        "[1, 6, 14, 14]",
        "[1, 16, 10, 10]",
        "[1, 16, 5, 5]",
        "[1, 400]",
        "[1, 120]",
        "[1, 84]",
        "[1, 10]",
    ], result.stdout
    assert layers["net.features.0"][-2] == "[1, 1, 32, 32]"  # 28x28 padded by data.pad=2
    assert [r[3] for r in rows if r[2] == "Conv2d"] == ["156", "2.4 K"]
    assert "Total params: 61,706" in result.stdout
    assert [r[2] for r in rows].count("ReLU") == 4  # the default model: relu, max pooling
    assert (tmp_path / "summary.txt").read_text() == result.stdout


def test_summary_takes_a_recipe_and_the_data_groups_padding(tmp_path: Path):
    best = run_module("src.summary", "experiment=best_mnist", f"hydra.run.dir={tmp_path / 'best'}")
    assert best.returncode == 0, best.stderr[-3000:]
    assert "Total params: 69,498" in best.stdout  # best_mnist: 16/32 channels, batch norm, 64-wide hidden layers
    unpadded = run_module("src.summary", "data.pad=0", f"hydra.run.dir={tmp_path / 'pad0'}")
    assert unpadded.returncode == 0, unpadded.stderr[-3000:]
    # 28x28 inputs: conv2 gives 16x4x4 = 256 features, so the first linear layer has 256*120+120 parameters
    assert "[1, 1, 28, 28]" in unpadded.stdout and "[1, 256]" in unpadded.stdout
    assert "Total params: 44,426" in unpadded.stdout


# -- predict ---------------------------------------------------------------------------------------------------------
def image_forms(digit: np.ndarray) -> dict[str, tuple[Image.Image, str]]:
    """One MNIST digit (28x28 uint8, white on black) drawn the ways a user's image might come."""
    ink, paper = np.array([20.0, 40.0, 120.0]), np.array([235.0, 225.0, 190.0])  # blue ink on cream paper
    coloured = (paper * (1 - digit[..., None] / 255.0) + ink * (digit[..., None] / 255.0)).round().astype(np.uint8)
    big = Image.fromarray(255 - digit).resize((160, 160), Image.Resampling.BICUBIC)
    framed = Image.new("L", (200, 200), 255)
    framed.paste(big, (25, 15))  # a margin, off centre
    photo = Image.fromarray(coloured, "RGB").resize((150, 190), Image.Resampling.BICUBIC)  # aspect ratio changed
    return {
        "original": (Image.fromarray(digit), "png"),
        "inverted": (Image.fromarray(255 - digit), "png"),
        "large_200": (framed, "png"),
        "rgb": (Image.fromarray(coloured, "RGB").resize((84, 84), Image.Resampling.BICUBIC), "png"),
        "rgb_jpeg": (photo, "jpg"),
    }


def test_predict_agrees_with_the_model_on_real_digits_in_any_form(trained: dict, tmp_path: Path, data_dir: Path):
    test_set = MNIST(str(data_dir), train=False)
    digits, labels = test_set.data[:N_DIGITS], test_set.targets[:N_DIGITS]
    loaded = load_checkpoint(trained["ckpt"])
    with torch.no_grad():  # what the model says about the original test tensors
        reference = loaded.net(loaded.preprocessing(digits)).argmax(1)

    folder = tmp_path / "images"
    folder.mkdir()
    forms: dict[str, list[Path]] = {}
    for i, digit in enumerate(digits.numpy()):
        for form, (img, ext) in image_forms(digit).items():
            path = folder / f"{i:03d}_{form}.{ext}"
            img.save(path, quality=75) if ext == "jpg" else img.save(path)
            forms.setdefault(form, []).append(path)

    run = tmp_path / "run"
    result = run_module("src.predict", f"ckpt_path={trained['ckpt']}", f"inputs=[{folder}]", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run / "predictions.csv", newline="") as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert len(rows) == N_DIGITS * len(forms)
    first = rows["000_original.png"]
    assert re.search(rf"000_original\.png: {re.escape(first['prediction'])}  \(top-3: ", result.stdout)
    # the top 3 of the network's softmax on the file as src.predict prepares it, with their classes
    x, _ = prepare_image(folder / "000_original.png", loaded.preprocessing)
    with torch.no_grad():
        expected = torch.softmax(loaded.net(x.unsqueeze(0))[0], dim=0).topk(3)
    top = [float(first[f"top{k}_prob"]) for k in (1, 2, 3)]
    assert top == pytest.approx(expected.values.tolist(), abs=1e-6)
    assert [first[f"top{k}_class"] for k in (1, 2, 3)] == [loaded.classes[i] for i in expected.indices.tolist()]

    print(
        f"\nprediction agreement with the model on the original tensors ({N_DIGITS} MNIST test digits, "
        f"model accuracy on them {(reference == labels).float().mean():.2%}):"
    )
    agreements = {}
    for form, paths in forms.items():
        predicted = torch.tensor([int(rows[p.name]["index"]) for p in paths])
        agreements[form] = float((predicted == reference).float().mean())
        print(f"  {form:<10} agreement {agreements[form]:.2%}   accuracy {(predicted == labels).float().mean():.2%}")
    assert all(a >= MIN_AGREEMENT for a in agreements.values()), agreements


def test_predict_reports_lenet1998s_own_probabilities(lecun1998_run: TrainedRun, tmp_path: Path, data_dir: Path):
    """p_i = e^{-y_i} / (e^{-j} + sum_k e^{-y_k}): the ten leave the rubbish class's share out."""
    digit = MNIST(str(data_dir), train=False).data[0].numpy()
    Image.fromarray(digit).save(tmp_path / "seven.png")
    run = tmp_path / "run"
    result = run_module(
        "src.predict", f"ckpt_path={lecun1998_run.ckpt}", f"inputs=[{tmp_path / 'seven.png'}]", "top_k=10",
        f"hydra.run.dir={run}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run / "predictions.csv", newline="") as f:
        row = next(csv.DictReader(f))
    loaded = load_checkpoint(lecun1998_run.ckpt)
    x, _ = prepare_image(tmp_path / "seven.png", loaded.preprocessing)
    with torch.no_grad():
        penalties = -loaded.net(x.unsqueeze(0))[0].double()
    j = -loaded.net.rubbish_logit
    expected = torch.exp(-penalties) / (math.exp(-j) + torch.exp(-penalties).sum())
    got = {row[f"top{k}_class"]: float(row[f"top{k}_prob"]) for k in range(1, 11)}
    assert [got[c] for c in loaded.classes] == pytest.approx(expected.tolist(), abs=1e-6)
    assert sum(got.values()) < 1


def test_mnist_digits_pass_through_the_preprocessing_almost_unchanged(data_dir: Path):
    # MNIST's own recipe applied to MNIST digits must give them back: same box, same centre of mass.
    digits = MNIST(str(data_dir), train=False).data[:200].numpy()
    diffs = [np.abs(to_mnist_format(d.astype(np.float32)) - d).mean() for d in digits]
    assert np.mean(diffs) < 1.0  # on the 0..255 scale


def test_drawings_on_a_transparent_background_are_read(tmp_path: Path, data_dir: Path):
    digit = MNIST(str(data_dir), train=False).data[0].numpy()
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)  # black ink whose opacity is the stroke, on transparent pixels
    rgba[..., 3] = digit
    Image.fromarray(rgba, "RGBA").save(tmp_path / "drawing.png")
    assert np.abs(to_mnist_format(read_grayscale(tmp_path / "drawing.png")) - digit).mean() < 1.0


def test_the_fast_paths_give_the_general_computation_bit_for_bit(data_dir: Path):
    """The demo's canvas PNGs (opaque RGBA) skip the alpha blend and stay whole numbers (uint8); the strokes are
    computed only inside a box sure to hold the ink, found on the raw pixels, and the ink's box by rows and columns:
    on real digits drawn as the page draws them, opaque and half-transparent, light on dark and dark on light, the
    grayscale image and the cropped strokes are exactly what the blend and the whole picture's computation give."""
    from src.bench.demo import canvas_body

    def general_gray(body: bytes) -> np.ndarray:  # the alpha blend, for any image with an alpha channel
        rgba = Image.open(io.BytesIO(body)).convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        lum = np.asarray(rgba.convert("L"), dtype=np.float32)
        ink = float((lum * alpha).sum() / alpha.sum())
        return lum * alpha + (255.0 if ink < 128 else 0.0) * (1.0 - alpha)

    def general_crop(gray: np.ndarray) -> np.ndarray:  # over the whole picture, the box by np.nonzero
        arr = np.asarray(gray, dtype=np.float32)
        background = float(np.median(np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])))
        if background > 127.5:
            arr, background = 255.0 - arr, 255.0 - background
        arr = np.clip(arr - background, 0.0, None)
        arr *= 255.0 / arr.max()
        rows, cols = np.nonzero(arr > 0.2 * 255.0)
        return arr[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]

    digits = MNIST(str(data_dir), train=False).data[:30].numpy()
    for digit in digits:
        for drawn in (digit, 255 - digit):
            opaque = canvas_body(drawn)
            faded = Image.open(io.BytesIO(opaque)).convert("RGBA")
            faded.putalpha(Image.fromarray(np.full((280, 280), 200, dtype=np.uint8)))
            half = io.BytesIO()
            faded.save(half, format="PNG")
            for body, dtype in ((opaque, np.uint8), (half.getvalue(), np.float32)):
                gray = read_grayscale(body)
                assert gray.dtype == dtype and gray.flags.writeable and np.array_equal(gray, general_gray(body))
                crop, expected = ink_crop(gray), general_crop(gray)
                assert crop.dtype == np.float32 and crop.shape == expected.shape and np.array_equal(crop, expected)
    dot = np.zeros((280, 280), dtype=bool)
    dot[3, 277] = True
    assert ink_box(dot) == (3, 3, 277, 277)


@pytest.mark.parametrize("side", [8_000, 100_000])  # over our 40 MP limit; over PIL's own bomb limit too
def test_decompression_bombs_are_refused_before_decoding(side: int, tmp_path: Path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(tiny_png_claiming(side, side))
    with pytest.raises(ImageError, match="bomb"):
        read_grayscale(bomb)


# -- export ----------------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_real_test_images(fmt: str, either_network: dict, tmp_path: Path, data_dir: Path):
    trained = either_network
    result = run_module("src.export", f"ckpt_path={trained['ckpt']}", f"format={fmt}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    reported = re.search(r"max abs difference vs PyTorch = (\S+) on logits up to (\S+) .*: passed", result.stdout)
    assert reported, result.stdout

    # Load the file independently and compare on other real test images, at two batch sizes.
    loaded = load_checkpoint(trained["ckpt"])
    images = loaded.test_split(data_dir, 3000)[0][2000:]
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(tmp_path / "lenet5.onnx"), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape == ["batch", 1, 32, 32]
        run = lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])  # noqa: E731
    else:
        scripted = torch.jit.load(str(tmp_path / "lenet5.pt"), map_location="cpu")
        run = lambda x: scripted(x)  # noqa: E731
    diffs = []
    with torch.no_grad():
        for batch in (images[:1], images):
            got, expected = run(batch), loaded.net(batch)
            diffs.append(float((got - expected).abs().max()))
            # float32 defaults: |got - expected| <= 1e-5 + 1.3e-6 * |expected|, element by element
            torch.testing.assert_close(got, expected)
    print(
        f"\n{fmt}: max abs difference vs PyTorch: {reported.group(1)} (src.export's check, logits up to "
        f"{reported.group(2)}), {max(diffs):.3g} (this test, {len(images)} other test images)"
    )
    described = json.loads((tmp_path / "lenet5.json").read_text())
    assert described["classes"] == loaded.classes
    assert described.get("rubbish_logit") == getattr(loaded.net, "rubbish_logit", None)  # how to read the outputs


def test_an_opset_that_cannot_hold_the_network_is_named_and_nothing_is_written(lecun1998_run, tmp_path: Path):
    # opset 8 predates im2col (11), which LeNet1998's sparse C3 exports to; 99 is past what torch.onnx writes
    for opset, fragment in ((8, "opset=8: "), (99, "opset=99: must be an integer in 7..20")):
        folder = tmp_path / str(opset)
        result = run_module(
            "src.export", f"ckpt_path={lecun1998_run.ckpt}", "format=onnx", f"opset={opset}", f"hydra.run.dir={folder}"
        )
        assert_clean_failure(result, fragment)
        assert not (folder / "lenet5.json").exists() and not (folder / "lenet5.onnx").exists()


@pytest.mark.parametrize("missing", ["state_dict", "hyper_parameters", "MNISTDataModule"])
def test_checkpoints_not_written_by_train_are_refused(missing: str, trained: dict, tmp_path: Path):
    checkpoint = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    del checkpoint[missing]
    torch.save(checkpoint, tmp_path / "partial.ckpt")
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint|not written by src.train"):
        load_checkpoint(tmp_path / "partial.ckpt")


# -- bad input: a clear message, exit status 2, nothing executed ----------------------------------------------------
BAD_CASES = {
    # name: (command, what to write, what the message must name)
    "eval_missing_checkpoint": ("src.eval", "missing_ckpt", "no such checkpoint file"),
    "predict_not_a_checkpoint": ("src.predict", "garbage_ckpt", "is not a readable checkpoint"),
    "eval_code_checkpoint": ("src.eval", "code_ckpt", "was refused"),
    "predict_code_checkpoint": ("src.predict", "code_ckpt", "was refused"),
    "export_code_checkpoint": ("src.export", "code_ckpt", "was refused"),
    "predict_missing_image": ("src.predict", "missing_image", "no such file or folder"),
    "predict_not_an_image": ("src.predict", "text_image", "not an image"),
    "predict_bomb_image": ("src.predict", "bomb_image", "bomb"),
    # The export check itself can fail: an impossible tolerance must stop the command.
    "export_check_fails": ("src.export", "tolerance_zero", "should not be used"),
}


@pytest.fixture(scope="module")
def bad_runs(trained: dict, tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict:
    """All bad-input runs, two at a time (each is a short process start; the machine has 2 cores)."""
    folder = tmp_path_factory.mktemp("bad")
    good_image = folder / "seven.png"
    Image.fromarray(MNIST(str(data_dir), train=False).data[0].numpy()).save(good_image)
    jobs = {}
    for name, (module, kind, _) in BAD_CASES.items():
        case = folder / name
        case.mkdir()
        ckpt, image = trained["ckpt"], good_image
        if kind == "missing_ckpt":
            ckpt = case / "missing.ckpt"
        elif kind == "garbage_ckpt":
            ckpt = case / "random.ckpt"
            ckpt.write_bytes(os.urandom(4096))
        elif kind == "code_ckpt":
            ckpt = case / "evil.ckpt"
            torch.save({"state_dict": {}, "payload": CodePayload(case / "pwned")}, ckpt)
        elif kind == "missing_image":
            image = case / "missing.png"
        elif kind == "text_image":
            image = case / "notes.png"
            image.write_text("not an image, just text with a .png name\n")
        elif kind == "bomb_image":
            image = case / "bomb.png"
            image.write_bytes(tiny_png_claiming(100_000, 100_000))
        args = [f"ckpt_path={ckpt}", f"hydra.run.dir={case / 'run'}"]
        if module == "src.predict":
            args.append(f"inputs=[{good_image},{image}]")
        if kind == "tolerance_zero":
            args += ["format=onnx", "atol=1e-12", "rtol=0", "check_images=50"]  # onnxruntime differs by ~1e-6
            ckpt = case / "run" / "lenet5.onnx"  # the message names the file it wrote and warns against
        jobs[name] = (module, args, ckpt, image)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_module, module, *args) for name, (module, args, _, _) in jobs.items()}
        return {name: (f.result(), jobs[name][2], jobs[name][3]) for name, f in futures.items()}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_is_a_clear_error(case: str, bad_runs: dict):
    result, ckpt, image = bad_runs[case]
    _, kind, message = BAD_CASES[case]
    named = image if kind.endswith("_image") else ckpt
    assert_clean_failure(result, message, str(named))
    if kind == "code_ckpt":
        marker = ckpt.parent / "pwned"
        assert not marker.exists(), "the checkpoint's code was executed"
        # The payload is live: an unsafe load (never done by the project) does run it.
        torch.load(ckpt, weights_only=False)
        assert marker.exists()
