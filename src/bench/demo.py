"""How fast the demo answers: ``python -m src.bench.demo [--ckpt <checkpoint>] [--requests 5000] [--clients 8]``.

Starts a real server (``python -m src.demo port=0``, a subprocess on 127.0.0.1) and sends it what the page sends
while a learner draws: a real MNIST test digit as a 280x280 canvas PNG (white strokes on black), written as Chromium
writes its canvases (``browser_png``). First one client (latency p50/p99), then ``--clients`` at once (throughput);
every answer is checked (status 200, a prediction).
Then the same checkpoint and image in one process, without HTTP (``python -m src.demo.timing``):
``Readout.predict_image``'s median time, and its parts' (reading the PNG, preparing the 28x28 digit, the forward pass
with every stage's activations).
Not a test: figures depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from src.bench.recipe import data_dir
from src.core import runs
from src.core.config import PROJECT_ROOT, compose_config
from src.data.datasets import load_test_set

PAD_SIDE = 280  # the page's drawing pad


def canvas_body(digit: np.ndarray) -> bytes:
    """What the page sends for a drawn digit: a 28x28 light-on-dark digit scaled up smoothly to the 280x280 pad, an
    opaque RGBA PNG written as Chromium's ``canvas.toBlob`` writes it (``browser_png``)."""
    image = Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize((PAD_SIDE, PAD_SIDE), Image.Resampling.BILINEAR)
    return browser_png(np.asarray(image.convert("RGBA")))


def browser_png(rgba: np.ndarray) -> bytes:
    """An RGBA image (H, W, 4 uint8) as a PNG laid out as Chromium writes a canvas: every row filtered "Up" (its
    difference from the row above), deflated at the fastest level, in IDAT chunks of 4,096 bytes; with a 2 KB window,
    the size and the decoding time of Chromium's own file come out the same (``tests/test_demo_page.py`` compares
    them). PIL's PNGs, filtered row by row as each compresses best (mostly "Paeth"), are smaller and take half as long
    again to decode: a bench that sent them would time a file the page never sends."""
    height, width, _ = rgba.shape
    rows = rgba.reshape(height, width * 4)
    up = rows.copy()
    up[1:] -= rows[:-1]  # modulo 256, as PNG defines its filters
    deflate = zlib.compressobj(1, zlib.DEFLATED, 11)
    data = deflate.compress(np.hstack([np.full((height, 1), 2, np.uint8), up]).tobytes()) + deflate.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))  # 8-bit RGBA, not interlaced
    idat = b"".join(chunk(b"IDAT", data[i : i + 4096]) for i in range(0, len(data), 4096))
    return b"\x89PNG\r\n\x1a\n" + header + idat + chunk(b"IEND", b"")


@contextmanager
def demo_server(overrides: Sequence[str], timeout: float = 300) -> Iterator[tuple[str, int]]:
    """``python -m src.demo <overrides>`` in a subprocess (its output discarded); its (host, port) once it listens
    (``queue.Empty`` after ``timeout`` seconds without that line)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "src.demo", *overrides],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()  # its output, read by a thread that keeps the pipe drained

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put("")  # the process ended

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while "demo at http://" not in (line := lines.get(timeout=max(deadline - time.monotonic(), 0.01))):
            if not line:
                raise RuntimeError(f"python -m src.demo {' '.join(overrides)} exited before it served")
        host, port = line.split("demo at http://", 1)[1].split()[0].rstrip("/").rsplit(":", 1)
        yield host, int(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drive(address: tuple[str, int], body: bytes, requests: int, clients: int) -> dict[str, Any]:
    """``requests`` POSTs of ``body`` to /api/predict from ``clients`` threads, one keep-alive connection each."""
    latencies: list[float] = []
    errors: list[str] = []
    predicted: list[int] = []
    lock = threading.Lock()
    counts = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(count: int) -> None:
        conn = http.client.HTTPConnection(*address, timeout=30)
        mine, wrong, seen = [], [], []
        for _ in range(count):
            start = time.perf_counter()
            try:
                conn.request("POST", "/api/predict", body=body, headers={"Content-Type": "image/png"})
                response = conn.getresponse()
                content = response.read()
                mine.append(time.perf_counter() - start)
                if response.status != 200:
                    wrong.append(f"HTTP {response.status}: {content[:200]!r}")
                else:
                    seen.append(json.loads(content)["prediction"]["index"])
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                wrong.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(*address, timeout=30)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.extend(wrong)
            predicted.extend(seen)

    threads = [threading.Thread(target=client, args=(n,)) for n in counts]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(1000 * x for x in latencies)
    return {
        "clients": clients,
        "requests": requests,
        "seconds": wall,
        "requests_per_s": requests / wall,
        "p50_ms": statistics.median(ms) if ms else None,
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None,
        "errors": len(errors),
        "first_errors": errors[:5],
        "predicted": sorted(set(predicted)),
    }


def in_process(ckpt: Path, body: bytes, repeats: int) -> dict[str, float]:
    """``python -m src.demo.timing``: the answer's median milliseconds in one process, and its parts'."""
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "canvas.png"
        image.write_bytes(body)
        command = [sys.executable, "-m", "src.demo.timing", str(ckpt), str(image), "--repeats", str(repeats)]
        done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"python -m src.demo.timing failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mnist_test_digit(folder: str, index: int) -> tuple[np.ndarray, int]:
    images, labels = load_test_set(folder, "mnist")
    return images[index].numpy(), int(labels[index])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m src.bench.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", help="checkpoint to serve (default: as python -m src.demo chooses)")
    parser.add_argument("--requests", type=int, default=5000, help="requests in all (default 5000)")
    parser.add_argument("--single", type=int, default=1000, help="of them, sent by one client first (default 1000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the rest (default 8)")
    parser.add_argument("--index", type=int, default=0, help="the MNIST test image drawn (default 0, a 7)")
    parser.add_argument("--repeats", type=int, default=1000, help="in-process calls timed per part (default 1000)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not 0 < args.single < args.requests or args.clients < 1:
        parser.error("need 0 < --single < --requests and --clients >= 1")

    digit, label = mnist_test_digit(data_dir(), args.index)
    body = canvas_body(digit)
    # the checkpoint the demo would serve, named to it, so that the in-process figures are the same model's
    log_dir = Path(compose_config().paths.log_dir)  # where python -m src.demo looks
    found = Path(args.ckpt) if args.ckpt else runs.newest_completed_checkpoint(log_dir)
    overrides = ["port=0", "host=127.0.0.1"] + ([f"ckpt_path={found}"] if found else [])
    with tempfile.TemporaryDirectory() as run_dir, demo_server([*overrides, f"hydra.run.dir={run_dir}"]) as address:
        drive(address, body, 100, 1)  # warm-up: connections, allocator, first-call paths
        single = drive(address, body, args.single, 1)
        many = drive(address, body, args.requests - args.single, args.clients)
    ckpt = found or runs.newest_completed_checkpoint(log_dir)  # or the one the demo trained first
    assert ckpt is not None, f"the demo served a checkpoint, found or trained under {log_dir}"
    here = in_process(ckpt, body, args.repeats)
    result = {
        "checkpoint": str(ckpt),
        "in_process": here,
        "image": f"MNIST test #{args.index} (a {label}) as a {PAD_SIDE}x{PAD_SIDE} canvas PNG, {len(body):,} bytes",
        "cpus": os.cpu_count(),
        "single": single,
        "concurrent": many,
        "errors": single["errors"] + many["errors"],
        "requests": args.requests,
    }
    print(result["image"])
    for name, r in (("1 client", single), (f"{args.clients} clients", many)):
        print(
            f"{name:>10}: {r['requests']:,} requests in {r['seconds']:.1f} s, {r['requests_per_s']:.0f} requests/s, "
            f"latency p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, errors {r['errors']}, predicted {r['predicted']}"
        )
        for e in r["first_errors"]:
            print(f"            {e}")
    print(f"{args.requests:,} requests in all (and 100 warm-up), {result['errors']} errors, {os.cpu_count()} CPUs")
    print(
        f"in process ({ckpt}, one thread, median of {args.repeats}): answer {here['answer_ms']:.2f} ms; reading the "
        f"PNG {here['read_png_ms']:.2f} ms, preparing the digit {here['prepare_ms']:.2f} ms, the forward pass with "
        f"every stage {here['forward_ms']:.2f} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
