"""``python -m src.demo``: the checkpoint to serve (given, the newest run's, or one trained first), the checks
before the server starts, and the server on its socket."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.checks import Problems, is_int
from src.config import PROJECT_ROOT
from src.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    ckpt_path: str | None
    host: str
    port: int
    max_pixels: int
    max_body_bytes: int
    train_first: list[str]


def read_settings(cfg: DictConfig) -> Settings:
    """The config's values, each checked before any work; all problems are reported at once."""
    problems = Problems(cfg)
    problems.check(
        "ckpt_path",
        lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
        "must be a checkpoint file, or null (the newest run's best checkpoint)",
    )
    problems.check(
        "host",
        lambda v: isinstance(v, str) and v.strip() != "" and not any(c.isspace() or c in "/?#@" for c in v),
        "must be an address or host name, e.g. 127.0.0.1 (this machine only) or 0.0.0.0",
    )
    problems.check("port", lambda v: is_int(v) and 0 <= v <= 65535, "must be an integer in 0..65535 (0: any free port)")
    problems.check("max_pixels", lambda v: is_int(v) and v >= 1, "must be an integer >= 1")
    problems.check("max_body_bytes", lambda v: is_int(v) and v >= 1, "must be an integer >= 1 (bytes)")
    problems.check(
        "train_first",
        lambda v: isinstance(v, list) and all(isinstance(o, str) for o in v),
        "must be a list of src.train overrides, e.g. [trainer.max_epochs=1]",
    )
    problems.raise_if_any()
    train_first = list(OmegaConf.to_container(cfg.train_first))
    return Settings(cfg.ckpt_path, cfg.host.strip(), cfg.port, cfg.max_pixels, cfg.max_body_bytes, train_first)


# -- which checkpoint ------------------------------------------------------------------------------------------------
def latest_checkpoint(log_dir: str | Path) -> Path | None:
    """The best checkpoint of the newest completed training run under ``log_dir`` (by its metrics.json's mtime): a
    run whose metrics.json says ``"status": "completed"`` and whose ``best_checkpoint`` file exists."""
    found: list[tuple[float, Path]] = []
    for summary in Path(log_dir).rglob("metrics.json"):
        try:
            record = json.loads(summary.read_text())
            best = record.get("best_checkpoint") if isinstance(record, dict) else None
            if record.get("status") == "completed" and best and Path(best).is_file():
                found.append((summary.stat().st_mtime, Path(best)))
        except (OSError, ValueError, AttributeError):  # half-written or foreign metrics.json files: not a run of ours
            continue
    return max(found, key=lambda item: item[0])[1] if found else None


def train_first(log_dir: Path, overrides: list[str]) -> Path:
    """Train a checkpoint (``python -m src.train <overrides>``, a subprocess, as a user would); its best checkpoint."""
    shown = " ".join(["python -m src.train", *overrides])
    command = [sys.executable, "-m", "src.train", *overrides, f"paths.log_dir={log_dir}"]
    print(f"No completed training run under {log_dir}: training one first ({shown}).", flush=True)
    result = subprocess.run(command, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise UserError(f"training the checkpoint failed ({shown} exited {result.returncode})")
    ckpt = latest_checkpoint(log_dir)
    if ckpt is None:
        raise UserError(f"{shown} finished but left no completed run under {log_dir}")
    print(f"Trained {ckpt}", flush=True)
    return ckpt


def run_info(ckpt: Path) -> dict[str, Any]:
    """What the page says about the checkpoint: its recipe (the experiment, from the run's .hydra files), data set
    and test accuracy (the run's metrics.json beside checkpoints/), where its run folder has them."""
    import yaml

    info: dict[str, Any] = {"path": str(ckpt), "run": None, "recipe": None, "overrides": [], "test_acc": None}
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    if run is None or not (run / ".hydra").is_dir():
        return info
    info["run"] = str(run)
    try:
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
        choices = (yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text()) or {}).get("hydra", {})
        experiment = choices.get("runtime", {}).get("choices", {}).get("experiment")
    except (OSError, yaml.YAMLError, AttributeError):
        overrides, experiment = [], None
    shown = [
        o for o in overrides
        if isinstance(o, str) and not o.startswith(("hydra.", "paths.", "callbacks.progress_bar", "experiment="))
    ]  # fmt: skip
    info["recipe"] = experiment or "default"
    info["overrides"] = shown
    try:
        metrics = json.loads((run / "metrics.json").read_text()).get("metrics", {})
        info["test_acc"] = float(metrics["test/acc"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return info


# -- the command -----------------------------------------------------------------------------------------------------
def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: one the system picks), so that the address printed is the one served."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise UserError(f"host={host} port={port}: cannot listen there ({exc.strerror or exc})") from None
    return sock


def serve(cfg: DictConfig) -> None:
    settings = read_settings(cfg)  # before any work
    import torch
    import uvicorn

    from src.demo.readout import Readout
    from src.demo.server import create_app, is_loopback
    from src.inference import load_checkpoint, load_test_split

    log_dir = Path(cfg.paths.log_dir)
    if settings.ckpt_path:
        ckpt = Path(settings.ckpt_path).expanduser()
    elif (ckpt := latest_checkpoint(log_dir)) is not None:
        print(f"No ckpt_path given: serving the newest completed run's best checkpoint, {ckpt}", flush=True)
    else:
        ckpt = train_first(log_dir, settings.train_first)
    loaded = load_checkpoint(ckpt)  # a bad or unsafe file is refused here, before the server starts
    test_x, test_y = load_test_split(cfg.paths.data_dir, loaded.data, 10_000)
    model = Readout(loaded, run_info(ckpt), test_x, test_y, settings.max_pixels)
    # One image per request: intra-op threads cost more than they save, and the cores serve concurrent requests.
    torch.set_num_threads(1)
    app = create_app(model, settings.max_body_bytes, settings.host)

    sock = listen(settings.host, settings.port)
    port = sock.getsockname()[1]
    accuracy = model.describe()["test_set"]
    print(
        f"Checkpoint {ckpt} ({loaded.data.dataset}, {accuracy['accuracy']:.2%} of {accuracy['images']:,} test images "
        f"right, {accuracy['misclassified']} wrong)",
        flush=True,
    )
    if not is_loopback(settings.host):
        log.warning(
            "host=%s: anyone who can reach this machine on the network can use this demo (port %d); "
            "host=127.0.0.1 keeps it to this machine",
            settings.host,
            port,
        )
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    if settings.host in ("0.0.0.0", "::"):
        shown_host = "127.0.0.1"
    print(f"LeNet-5 demo at http://{shown_host}:{port}/ (Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, log_level="warning", lifespan="off", server_header=False
    )
    uvicorn.Server(config).run(sockets=[sock])
