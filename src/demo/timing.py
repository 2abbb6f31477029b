"""How long the demo takes to answer in one process, without HTTP: ``python -m src.demo.timing <checkpoint> <image>
[--repeats N]`` prints, as one JSON line, the median milliseconds of ``Readout.predict_image`` on the image's bytes and
of its parts (reading the image, preparing the 28x28 digit, the forward pass with every stage's activations), on one
thread as the server runs. ``python -m src.bench.demo`` runs it beside its HTTP figures (a tool runs another tool, it
does not import it)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from src.core.config import compose_config
from src.data.images import read_grayscale, to_mnist_format
from src.demo.readout import Readout
from src.training.checkpoints import load_checkpoint


def time_answer(ckpt: Path, body: bytes, repeats: int) -> dict[str, float]:
    """Milliseconds, the median of ``repeats`` calls each (after 20 not counted): the whole answer and its parts."""
    loaded = load_checkpoint(ckpt)
    model = Readout(loaded, {}, *loaded.test_split(compose_config().paths.data_dir))
    torch.set_num_threads(1)  # as src.demo serves
    gray = read_grayscale(body)
    digit = to_mnist_format(gray)
    x = model.preprocessing(torch.from_numpy(digit).unsqueeze(0))
    parts: dict[str, Callable[[], object]] = {
        "answer_ms": lambda: model.predict_image(body),
        "read_png_ms": lambda: read_grayscale(body),
        "prepare_ms": lambda: model.preprocessing(torch.from_numpy(to_mnist_format(gray)).unsqueeze(0)),
        "forward_ms": lambda: model.forward(x, digit),
    }
    timings = {}
    for name, call in parts.items():
        for _ in range(20):
            call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        timings[name] = 1000 * statistics.median(times)
    return timings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.demo.timing", description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", type=Path, help="the checkpoint the demo serves")
    parser.add_argument("image", type=Path, help="an image file, as the page or a client sends it")
    parser.add_argument("--repeats", type=int, default=1000, help="calls timed per part (default 1000)")
    args = parser.parse_args(argv)
    print(json.dumps(time_answer(args.ckpt, args.image.read_bytes(), args.repeats)))


if __name__ == "__main__":
    main()
