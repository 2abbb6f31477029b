"""Helpers shared by the tests: run an entry point as a user would, read TensorBoard files back, serve the demo,
draw on its canvas."""

from __future__ import annotations

import json
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from src.core.config import compose_config  # noqa: F401  (the tests compose configs as the entry points do)

ROOT = Path(__file__).resolve().parent.parent

# A few batches per stage: enough to exercise every hook, cheap enough for CI.
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.progress_bar.refresh_rate=0",
]


# Three short deterministic epochs: a fault made after the first one's checkpoint meets the run mid-way.
SHORT = [
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=30",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.deterministic=true",
]


def start_after_first_checkpoint(
    run: Path, *recipe: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.Popen:
    """``python -m src.train <recipe>`` into ``run``, returned once its first checkpoint is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "src.train", *recipe, "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + timeout
    while not (run / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no checkpoint within {timeout} s: {proc.communicate()[1][-3000:]}")
        time.sleep(0.01)
    return proc


def run_module(
    module: str, *overrides: str, cwd: Path = ROOT, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <overrides>`` as a user would, capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_scalars(log_dir: Path):
    """Load a TensorBoard run folder with TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams_data(acc, field: str):
    """A run's HPARAMS record from its events: ``experiment`` (the columns it declares; TensorBoard shows one run's
    declaration for the whole --logdir) or ``session_start_info`` (its own values)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField(field):
            return getattr(data, field)
    raise AssertionError(f"no HPARAMS {field} among the run's summaries {list(content)}")


def sweep_jobs(sweep: Path) -> list[Path]:
    """A sweep's job folders (``<job number>_<overrides>``), in job order."""
    return sorted(
        (p for p in sweep.iterdir() if p.is_dir() and p.name.split("_")[0].isdigit()),
        key=lambda p: int(p.name.split("_")[0]),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoardServer:
    """A real TensorBoard server on 127.0.0.1 for ``logdir``, asked through its HTTP API (``/data/...``) as its web
    page asks. Use as a context manager; once it has stopped, ``log`` holds what the server wrote on stderr."""

    def __init__(self, logdir: Path) -> None:
        self.logdir, self.port, self.log = logdir, free_port(), ""

    def __enter__(self) -> TensorBoardServer:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(self.logdir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.log = self.process.communicate(timeout=30)[1]

    def get(self, path: str, body: dict | None = None, raw: bool = False) -> Any:
        """``/data<path>``: parsed JSON, or the bytes with ``raw``; a ``body`` is POSTed as JSON."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/data{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            content = r.read()
        return content if raw else json.loads(content)

    def wait_for(self, path: str, ready: Callable[[Any], bool], timeout: float = 60) -> Any:
        """Ask ``path`` until ``ready(answer)`` (the server starts, then reads the logdir); the last answer."""
        answer, deadline = None, time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = self.get(path)
            except OSError:  # not listening yet
                answer = None
            if answer is not None and ready(answer):
                break
            time.sleep(0.5)
        return answer


def tiny_png_claiming(width: int, height: int) -> bytes:
    """A valid 8-bit grayscale PNG header claiming ``width`` x ``height`` pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


class CodePayload:
    """Unpickling this runs ``touch <marker>``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# -- the demo: its server in a subprocess, and what its drawing page sends ---------------------------------------
class DemoServer:
    """``python -m src.demo <overrides>`` in a subprocess; ``url`` once it prints its address. A context manager:
    the server is stopped on exit; ``output`` then holds everything it printed (stdout and stderr)."""

    def __init__(self, *overrides: str, timeout: float = 300, env: dict[str, str] | None = None) -> None:
        self.overrides, self.timeout = list(overrides), timeout
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
        self.lines: list[str] = []
        self.url = ""

    def __enter__(self) -> DemoServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "src.demo", *self.overrides],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        found: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for line in self.process.stdout:
                self.lines.append(line)
                if "demo at http://" in line:
                    found.put(line.split("demo at ", 1)[1].split()[0].rstrip("/"))
            found.put("")  # the process ended

        threading.Thread(target=read, daemon=True).start()
        try:
            self.url = found.get(timeout=self.timeout)
        except queue.Empty:
            self.url = ""
        if not self.url:
            self.__exit__()
            raise RuntimeError(f"python -m src.demo {' '.join(self.overrides)} did not start:\n{self.output[-4000:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)


# -- the trackers' own readers (tests/test_trackers.py, tests/test_slurm.py) ----------------------------------------
def mlflow_client(log_dir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{log_dir}/mlflow.db")


def mlflow_runs(log_dir: Path, experiment: str) -> dict[str, Any]:
    client = mlflow_client(log_dir)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    return {r.info.run_name: r for r in client.search_runs([found.experiment_id])}


def mlflow_artifacts(log_dir: Path, run_id: str, folder: str = "") -> list[str]:
    client, found = mlflow_client(log_dir), []
    for item in client.list_artifacts(run_id, folder or None):
        found += mlflow_artifacts(log_dir, run_id, item.path) if item.is_dir else [item.path]
    return found


def wandb_records(run: Path) -> Iterator[Any]:
    """The records of a run's offline W&B file (``wandb/offline-run-*/run-*.wandb``), as W&B's protobuf ``Record``s:
    the file is W&B's LevelDB-style log (a 7-byte header, then 32 KiB blocks of checksummed, typed chunks)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:7] == b":W&B\xe1\xbe\x00", f"{path} is not a W&B run file"
    block, pos, chunks = 32768, 7, []
    while pos + 7 <= len(data):
        if (left := block - pos % block) < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def wandb_run(run: Path) -> dict[str, Any]:
    """What W&B recorded: the run's name, group and config, each key's last logged value, the images' keys."""
    found: dict[str, Any] = {"config": {}, "last": {}}
    for record in wandb_records(run):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found["name"], found["group"] = record.run.display_name, record.run.run_group
            found["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            found["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            found["last"].update(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
    return found


def assert_orthonormal_rows(net: Any) -> None:
    """Every conv and linear layer of ``net``: each unit's weights (a conv's filter, flattened) a unit vector,
    orthogonal to the other units', and its biases zero (``model.init=orthogonal``)."""
    import torch

    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers
    for layer in layers:
        rows = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        assert torch.allclose(rows @ rows.T, torch.eye(rows.shape[0]), atol=1e-5), layer
        assert torch.count_nonzero(layer.bias) == 0, layer
