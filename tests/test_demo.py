"""``python -m src.demo``: a real uvicorn server on 127.0.0.1 serving a checkpoint trained on real MNIST, asked as its
page asks (the JSON API of docs/demo.md), refusing bad input and going on serving, and the command's own checks; and
a LeNet1998 checkpoint's answers, which show F6 beside the RBF layer's bitmaps with each class's distance.
The page itself, in a real Chromium, is tests/test_demo_page.py."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import MNIST

from src.bench.demo import canvas_body
from src.data.images import prepare_image
from src.models.lenet1998 import TABLE_I
from src.training.checkpoints import load_checkpoint
from tests.conftest import TrainedRun
from tests.helpers import TINY, CodePayload, DemoServer, compose_config, run_module, tiny_png_claiming

N_DIGITS = 100  # real test digits sent as canvas PNGs
STAGES = [
    ("conv1 + ReLU", [6, 28, 28]),
    ("pool1 (MaxPool2d)", [6, 14, 14]),
    ("conv2 + ReLU", [16, 10, 10]),
    ("pool2 (MaxPool2d)", [16, 5, 5]),
    ("fc1 + ReLU", [120]),
    ("fc2 + ReLU", [84]),
]


@pytest.fixture(scope="module")
def server(mnist_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> DemoServer:
    folder = tmp_path_factory.mktemp("demo")
    with DemoServer(f"ckpt_path={mnist_run.ckpt}", "port=0", f"hydra.run.dir={folder}") as running:
        yield running


@pytest.fixture(scope="module")
def lecun1998_server(lecun1998_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> DemoServer:
    folder = tmp_path_factory.mktemp("demo1998")
    with DemoServer(f"ckpt_path={lecun1998_run.ckpt}", "port=0", f"hydra.run.dir={folder}") as running:
        yield running


@pytest.fixture(scope="module")
def mnist_test(data_dir: Path) -> MNIST:
    return MNIST(str(data_dir), train=False)


def ask(
    server: DemoServer, method: str, path: str, body: Any = None, content_type: str = "image/png", **headers: str
) -> tuple[int, Any, dict[str, str]]:
    """One request; (status, the JSON answer, the response headers with lower-case names)."""
    conn = http.client.HTTPConnection(*server.address, timeout=60)
    if isinstance(body, (dict, list)):
        body, content_type = json.dumps(body).encode(), "application/json"
    sent = {"Content-Type": content_type, **headers} if body is not None else dict(headers)
    try:
        try:  # an iterable body goes chunked (no Content-Length)
            conn.request(method, path, body=body, headers=sent)
        except (BrokenPipeError, ConnectionResetError):  # refused mid-body: the answer was sent before the close
            pass
        response = conn.getresponse()
        content = response.read()
    finally:
        conn.close()
    answer_headers = {k.lower(): v for k, v in response.getheaders()}
    is_json = answer_headers.get("content-type", "").startswith("application/json")
    return response.status, (json.loads(content) if is_json else content), answer_headers


def decode(block: dict) -> np.ndarray:
    """A quantised array as the page decodes it: uint8 steps of its shape."""
    return np.frombuffer(base64.b64decode(block["data"]), dtype=np.uint8).reshape(block["shape"])


def dequantised(block: dict) -> np.ndarray:
    """The values a block stands for, by its documented rule (docs/demo.md): ``min + q / 255 * (max - min)``."""
    return block["min"] + decode(block).astype(np.float64) / 255 * (block["max"] - block["min"])


def layer_by_layer(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The logits and every stage's output (each activation and pooling), the layers applied one after the other by
    hand: no hooks, not the server's way of reading them."""
    stages, kinds = [], (torch.nn.ReLU, torch.nn.MaxPool2d)
    with torch.no_grad():
        for layer in [*net.features, *net.classifier]:
            x = layer(x)
            if isinstance(layer, kinds):
                stages.append(x[0])
    return x, stages


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


# -- what it serves ------------------------------------------------------------------------------------------------
def test_the_model_description_names_the_checkpoint_its_classes_and_stages(server: DemoServer, mnist_run: TrainedRun):
    status, model, _ = ask(server, "GET", "/api/model")
    assert status == 200
    loaded = load_checkpoint(mnist_run.ckpt)
    assert model["classes"] == list(loaded.classes) and model["dataset"] == "mnist"
    assert model["checkpoint"]["path"] == str(mnist_run.ckpt)
    assert model["checkpoint"]["recipe"] == "fast_mnist"
    assert model["checkpoint"]["test_acc"] == pytest.approx(mnist_run.test_acc)
    assert [(s["name"], s["shape"]) for s in model["stages"]] == STAGES
    conv1 = loaded.net.features[0].weight.detach().numpy()
    assert decode(model["filters"]).shape == (6, 1, 5, 5)
    # symmetric about zero (white is 0, as src.visualize draws them), each weight within half a step of 255
    limit = float(np.abs(conv1).max())
    assert model["filters"]["min"] == pytest.approx(-limit) and model["filters"]["max"] == pytest.approx(limit)
    assert np.abs(dequantised(model["filters"]) - conv1).max() <= limit / 255 + 1e-6
    assert model["test_set"]["images"] == 10_000 and 0 < model["test_set"]["misclassified"] < 500


def test_test_digits_drawn_on_the_canvas_are_read_as_src_predict_reads_them(
    server: DemoServer, mnist_run: TrainedRun, mnist_test: MNIST
):
    """The page's canvas PNGs of real test digits: the server reads the bytes as ``src.predict`` does
    (``prepare_image``), and its answer is the network's, stage by stage, computed here layer by layer; the prepared
    input is the test digit again, in MNIST's own layout; and the digits read right."""
    loaded = load_checkpoint(mnist_run.ckpt)
    net = loaded.net.eval()
    right, alike = 0, []
    for index in range(N_DIGITS):
        original = mnist_test.data[index].numpy()
        body = canvas_body(original)
        status, answer, _ = ask(server, "POST", "/api/predict", body)
        assert status == 200 and answer["blank"] is False, answer
        x, digit = prepare_image(body, loaded.preprocessing)
        alike.append(np.corrcoef(digit.ravel(), original.ravel())[0, 1])  # back from the 280x280 pad, re-centred
        logits, maps = layer_by_layer(net, x.unsqueeze(0))
        probs = torch.softmax(logits[0], dim=0)
        assert answer["probabilities"] == pytest.approx(probs.tolist(), abs=1e-5)
        assert answer["prediction"]["index"] == int(probs.argmax())
        assert answer["prediction"]["class"] == loaded.classes[int(probs.argmax())]
        assert np.abs(decode(answer["input"]).astype(float) - digit).max() <= 0.5 + 1e-3  # one rounding step
        assert [(s["name"], s["shape"]) for s in answer["stages"]] == STAGES
        for block, expected in zip(answer["stages"], maps, strict=True):
            assert block["min"] == pytest.approx(expected.min().item(), abs=1e-4)
            assert block["max"] == pytest.approx(expected.max().item(), abs=1e-4)
            step = (block["max"] - block["min"]) / 255
            assert np.abs(dequantised(block) - expected.numpy()).max() <= step / 2 + 1e-4
        right += answer["prediction"]["index"] == int(mnist_test.targets[index])
    print(f"\n{right} of {N_DIGITS} MNIST test digits sent as 280x280 canvas PNGs read right")
    assert right >= 0.95 * N_DIGITS
    # prepared as MNIST made its digits: most come back as the test digit itself (a few are cropped otherwise)
    assert np.median(alike) > 0.95 and min(alike) > 0.5, sorted(alike)[:5]


def test_a_28x28_array_is_the_network_input_as_a_test_image_is(
    server: DemoServer, mnist_run: TrainedRun, mnist_test: MNIST
):
    """Sent as JSON, a test image is not re-centred: the answer is the network's on the image as evaluation feeds it."""
    loaded = load_checkpoint(mnist_run.ckpt)
    images, labels = loaded.test_split(compose_config().paths.data_dir, 20)
    with torch.no_grad():
        expected = torch.softmax(loaded.net.eval()(images), dim=1)
    right = 0
    for index in range(20):
        status, answer, _ = ask(server, "POST", "/api/predict", {"pixels": mnist_test.data[index].tolist()})
        assert status == 200, answer
        assert answer["probabilities"] == pytest.approx(expected[index].tolist(), abs=1e-5)
        assert (decode(answer["input"]) == mnist_test.data[index].numpy()).all()
        right += answer["prediction"]["index"] == int(labels[index])
    assert right >= 19


def test_random_test_images_come_with_their_true_labels(server: DemoServer, mnist_test: MNIST):
    for _ in range(5):
        status, answer, _ = ask(server, "GET", "/api/random")
        assert status == 200
        assert answer["label"] == int(mnist_test.targets[answer["index"]])
        assert (decode(answer["input"]) == mnist_test.data[answer["index"]].numpy()).all()
    for _ in range(3):
        status, answer, _ = ask(server, "GET", "/api/random/misclassified")
        assert status == 200
        assert answer["label"] == int(mnist_test.targets[answer["index"]])
        assert answer["prediction"]["index"] != answer["label"]


def test_the_page_and_its_files_are_served_with_the_security_headers(server: DemoServer):
    status, page, headers = ask(server, "GET", "/")
    assert status == 200 and b'<canvas id="pad"' in page
    for path in ["/", "/static/app.js", "/static/style.css", "/api/model", "/no/such/page"]:
        _, _, headers = ask(server, "GET", path)
        assert headers["content-security-policy"] == "default-src 'self'", path
        assert headers["x-content-type-options"] == "nosniff", path
    # the page names no other host: no CDN, no web fonts
    for path in ["/", "/static/app.js", "/static/style.css"]:
        text = ask(server, "GET", path)[1].decode()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


# -- LeNet1998: F6 beside the ten bitmaps, and the paper's probabilities -------------------------------------------
def test_a_lenet1998_answer_shows_f6_the_bitmaps_and_each_class_distance(
    lecun1998_server: DemoServer, lecun1998_run: TrainedRun, mnist_test: MNIST
):
    """The bitmaps are the RBF layer's own ``centers``; each answer's F6 is the network's (computed here layer by
    layer), its ten distances the squared distances from that F6 to each bitmap, its probabilities
    p_i = e^{-y_i} / (e^{-j} + sum_k e^{-y_k}) with the checkpoint's j, and the nearest bitmap the prediction."""
    loaded = load_checkpoint(lecun1998_run.ckpt)
    net = loaded.net.eval()
    centers = net.classifier.output.centers.double().numpy()  # (10, 84): the ten bitmaps, row by row
    j = float(loaded.model["rubbish_penalty"])
    assert j == -net.rubbish_logit == 10.0

    status, model, _ = ask(lecun1998_server, "GET", "/api/model")
    assert status == 200
    rbf = model["rbf"]
    assert (rbf["width"], rbf["height"]) == (7, 12) and rbf["rubbish_penalty"] == j
    assert rbf["limit"] == pytest.approx(1.7159)
    assert np.array_equal(np.array(rbf["bitmaps"]), centers.reshape(10, 12, 7))
    assert [(s["name"], s["shape"]) for s in model["stages"]] == [
        ("C1", [6, 28, 28]), ("S2", [6, 14, 14]), ("C3", [16, 10, 10]), ("S4", [16, 5, 5]), ("C5", [120]), ("F6", [84])
    ]  # fmt: skip
    c3 = next(s for s in model["stages"] if s["name"] == "C3")
    assert c3["inputs"] == [list(c) for c in TABLE_I]
    c1 = net.features.C1.weight.detach().numpy()
    assert model["filters"]["layer"] == "C1" and decode(model["filters"]).shape == (6, 1, 5, 5)
    assert np.abs(dequantised(model["filters"]) - c1).max() <= np.abs(c1).max() / 255 + 1e-6

    images, _ = loaded.test_split(compose_config().paths.data_dir, 20)
    with torch.no_grad():
        f6_here = net.classifier.F6_f(net.classifier.F6(net.features(images))).double().numpy()
    for index in range(20):
        status, answer, _ = ask(lecun1998_server, "POST", "/api/predict", {"pixels": mnist_test.data[index].tolist()})
        assert status == 200, answer
        f6 = np.array(answer["rbf"]["f6"], dtype=np.float64)
        assert f6.shape == (12, 7)
        assert np.abs(f6.ravel() - f6_here[index]).max() < 1e-5
        y = np.array(answer["rbf"]["distances"])
        assert y.shape == (10,)
        assert y == pytest.approx(((f6.reshape(1, 84) - centers) ** 2).sum(axis=1), rel=1e-5, abs=1e-3)
        p = np.exp(-y) / (np.exp(-j) + np.exp(-y).sum())
        assert answer["probabilities"] == pytest.approx(p.tolist(), abs=2e-6)
        assert answer["rubbish"] == pytest.approx(np.exp(-j) / (np.exp(-j) + np.exp(-y).sum()), abs=2e-6)
        assert sum(answer["probabilities"]) < 1 and sum(answer["probabilities"]) + answer["rubbish"] == pytest.approx(1)
        assert answer["prediction"]["index"] == int(y.argmin())
        assert answer["prediction"]["probability"] == pytest.approx(p.max(), abs=2e-6)


def test_a_lenet5_checkpoint_has_no_rbf_readings(server: DemoServer, mnist_test: MNIST):
    status, model, _ = ask(server, "GET", "/api/model")
    assert status == 200 and "rbf" not in model
    assert not any("inputs" in stage for stage in model["stages"])
    status, answer, _ = ask(server, "POST", "/api/predict", canvas_body(mnist_test.data[0].numpy()))
    assert status == 200 and "rbf" not in answer and "rubbish" not in answer
    assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)  # softmax: every image is one of the ten


# -- bad input: its status and message, and the server goes on serving -------------------------------------------
def chunks(total: int, size: int = 1 << 20):
    for start in range(0, total, size):
        yield b"\0" * min(size, total - start)


BAD_REQUESTS = {
    # name: (method, path, body, content type, status, what the message says)
    "not_an_image": ("POST", "/api/predict", b"hello, not an image", "image/png", 400, "not an image"),
    "empty_body": ("POST", "/api/predict", b"", "image/png", 400, "the body is empty"),
    "too_large": ("POST", "/api/predict", b"\0" * 10_000_001, "image/png", 413, "more than the 10,000,000"),
    "too_large_chunked": ("POST", "/api/predict", "chunked", "image/png", 413, "stopped reading"),
    "bomb": ("POST", "/api/predict", tiny_png_claiming(8_000, 8_000), "image/png", 413, "decompression bomb"),
    "not_json": ("POST", "/api/predict", b"{pixels: ", "application/json", 400, "not valid JSON"),
    "no_pixels": ("POST", "/api/predict", {"image": []}, None, 422, "no 'pixels'"),
    "wrong_shape": ("POST", "/api/predict", {"pixels": [[0] * 28] * 27}, None, 422, "shape 27x28; expected"),
    "ragged": ("POST", "/api/predict", {"pixels": [[0] * 28] * 27 + [[0]]}, None, 422, "rows of different lengths"),
    "out_of_range": ("POST", "/api/predict", {"pixels": [[0] * 28] * 27 + [[300] * 28]}, None, 422, "outside 0..255"),
    "not_numbers": ("POST", "/api/predict", {"pixels": [["a"] * 28] * 28}, None, 422, "is not a number"),
    "climbs_out": ("GET", "/static/../readout.py", None, None, 404, "Not Found"),
    "climbs_out_encoded": ("GET", "/static/%2e%2e/readout.py", None, None, 404, "Not Found"),
    "climbs_out_slash": ("GET", "/static/..%2f..%2fconfig.py", None, None, 404, "Not Found"),
    "no_such_route": ("GET", "/api/files?name=/etc/passwd", None, None, 404, "Not Found"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_its_status_and_message_and_the_server_goes_on(case: str, server: DemoServer, mnist_test: MNIST):
    method, path, body, content_type, status, message = BAD_REQUESTS[case]
    if body == "chunked":
        body = chunks(12_000_000)  # no Content-Length: the limit is kept while reading
    got, answer, headers = ask(server, method, path, body, content_type or "image/png")
    assert got == status, answer
    assert message in answer["error"], answer
    assert headers["content-security-policy"] == "default-src 'self'"
    good, answer, _ = ask(server, "POST", "/api/predict", canvas_body(mnist_test.data[0].numpy()))
    assert good == 200 and answer["prediction"]["index"] == 7


@pytest.mark.parametrize("blank", ["black", "white", "transparent", "zeros_array"])
def test_a_blank_canvas_is_nothing_drawn(blank: str, server: DemoServer):
    if blank == "zeros_array":
        body: Any = {"pixels": [[0] * 28] * 28}
    else:
        mode, color = {"black": ("RGB", (0, 0, 0)), "white": ("L", 255), "transparent": ("RGBA", (0, 0, 0, 0))}[blank]
        out = io.BytesIO()
        Image.new(mode, (280, 280), color).save(out, format="PNG")
        body = out.getvalue()
    status, answer, _ = ask(server, "POST", "/api/predict", body)
    assert status == 200
    assert answer == {"blank": True, "message": "nothing drawn"}


def test_another_host_name_is_refused_on_a_loopback_server(server: DemoServer):
    """A page on another site that points its own host name at 127.0.0.1 (DNS rebinding) cannot use the API."""
    status, answer, _ = ask(server, "GET", "/api/model", Host="evil.example:8000")
    assert status == 400 and "'evil.example:8000' is not this server's name" in answer["error"]
    assert ask(server, "GET", "/api/model", Host=f"localhost:{server.address[1]}")[0] == 200


# -- the command ---------------------------------------------------------------------------------------------------
def assert_refused(result, *fragments: str) -> None:
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr and "demo at http://" not in result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr[-3000:]}"


def test_bad_checkpoints_and_settings_are_refused_before_the_server_starts(tmp_path: Path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": CodePayload(tmp_path / "pwned")}, evil)
    cases = {
        "missing": ([f"ckpt_path={tmp_path / 'missing.ckpt'}"], ["missing.ckpt': no such file"]),
        "code": ([f"ckpt_path={evil}"], ["was refused", str(evil)]),
        "settings": (["port=70000", "max_body_bytes=0"], ["port=70000: must be an integer in 0..65535", "max_body"]),
    }
    for name, (overrides, fragments) in cases.items():
        result = run_module("src.demo", *overrides, f"hydra.run.dir={tmp_path / name}", timeout=120)
        assert_refused(result, *fragments)
    assert not (tmp_path / "pwned").exists(), "the checkpoint's code was executed"


def test_a_busy_port_is_refused_before_a_checkpoint_is_trained(tmp_path: Path):
    """No run under paths.log_dir: the demo would train one first (about a minute); a port it cannot have is told
    before that, with the way out."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_module(
            "src.demo", f"port={port}", f"paths.log_dir={tmp_path / 'none'}", f"hydra.run.dir={tmp_path}", timeout=60
        )
    assert_refused(result, f"port={port}: cannot listen there", "port=0 picks a free port")
    assert "training one first" not in result.stdout
    # an address this machine does not have (TEST-NET-1): another port would not help, so none is offered
    elsewhere = run_module("src.demo", "host=192.0.2.1", f"hydra.run.dir={tmp_path / 'elsewhere'}", timeout=60)
    assert_refused(elsewhere, "host=192.0.2.1 port=8000: cannot listen there")
    assert "port=0" not in elsewhere.stderr


def copy_run(run: Path, to: Path, status: str) -> None:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("events.out.*"))
    summary = json.loads((to / "metrics.json").read_text())
    summary["status"] = status
    summary["best_checkpoint"] = str(to / "checkpoints" / Path(summary["best_checkpoint"]).name)
    (to / "metrics.json").write_text(json.dumps(summary))


def test_without_ckpt_path_it_serves_the_newest_completed_run_else_trains_one_first(
    mnist_run: TrainedRun, tmp_path: Path
):
    outputs = tmp_path / "outputs"
    copy_run(mnist_run.run, outputs / "train" / "runs" / "day" / "stale", "completed")
    os.utime(outputs / "train" / "runs" / "day" / "stale" / "metrics.json", (1e9, 1e9))  # in 2001
    copy_run(mnist_run.run, outputs / "train" / "runs" / "day" / "older", "completed")
    copy_run(mnist_run.run, outputs / "train" / "runs" / "day" / "newer_but_stopped", "interrupted")
    chosen = outputs / "train" / "runs" / "day" / "older" / "checkpoints" / mnist_run.ckpt.name
    with DemoServer("port=0", f"paths.log_dir={outputs}", f"hydra.run.dir={tmp_path / 'serve'}") as running:
        assert ask(running, "GET", "/api/model")[1]["checkpoint"]["path"] == str(chosen)
    assert f"the newest completed run's best checkpoint, {chosen}" in running.output

    empty = tmp_path / "fresh_outputs"
    train_first = "train_first=[" + ",".join(f"'{o}'" for o in ["experiment=fast_mnist", *TINY]) + "]"
    with DemoServer("port=0", f"paths.log_dir={empty}", train_first, f"hydra.run.dir={tmp_path / 'first'}") as first:
        served = Path(ask(first, "GET", "/api/model")[1]["checkpoint"]["path"])
    assert served.is_file() and empty in served.parents
    assert "No completed training run under" in first.output and f"Trained {served}" in first.output


def test_host_0000_warns_that_the_network_can_reach_it(mnist_run: TrainedRun, tmp_path: Path):
    with DemoServer(f"ckpt_path={mnist_run.ckpt}", "host=0.0.0.0", "port=0", f"hydra.run.dir={tmp_path}") as running:
        assert ask(running, "GET", "/api/model")[0] == 200
    assert "anyone who can reach this machine on the network can use this demo" in running.output
    with DemoServer(f"ckpt_path={mnist_run.ckpt}", "port=0", f"hydra.run.dir={tmp_path / 'local'}") as local:
        assert local.address[0] == "127.0.0.1"
    assert "anyone who can reach" not in local.output


def test_the_demo_bench_times_the_server_and_the_answer_in_process(mnist_run, tmp_path: Path):
    """python -m src.bench.demo: a real server driven by one client then two, then the same checkpoint and canvas PNG
    in-process: the answer's median time and its parts', every request answered."""
    figures = tmp_path / "demo.json"
    argv = ["--ckpt", str(mnist_run.ckpt), "--requests", "40", "--single", "20", "--clients", "2", "--repeats", "5"]
    result = run_module("src.bench.demo", *argv, "--json", str(figures), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(figures.read_text())
    assert found["errors"] == 0 and found["single"]["requests"] == 20 and found["concurrent"]["clients"] == 2
    assert found["checkpoint"] == str(mnist_run.ckpt)
    assert set(found["in_process"]) == {"answer_ms", "read_png_ms", "prepare_ms", "forward_ms"}
    assert all(value > 0 for value in found["in_process"].values()), found["in_process"]
    assert "in process (" in result.stdout and "the forward pass with every stage" in result.stdout, result.stdout
