"""Draw a digit, watch LeNet-5 read it: ``python -m src.demo [ckpt_path=<checkpoint>] [host=127.0.0.1] [port=8000]``.

The settings are checked; the checkpoint is the one given, else the newest completed training run's best under
outputs/, else one trained first (``train_first``: the default recipe, one epoch), and is checked as ``src.predict``
checks it; then the server (src/demo/server.py, the page in src/demo/static/, the JSON API of docs/demo.md) answers
with the readings of src/demo/readout.py.
"""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from src.core import runs
from src.core.config import PROJECT_ROOT
from src.core.entry_point import hydra_entry_point
from src.core.errors import UserError
from src.core.settings import Rule, as_list, check, integer
from src.training.checkpoints import load_checkpoint

log = logging.getLogger(__name__)
RULES = [
    Rule(
        "ckpt_path",
        lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
        "must be a checkpoint file, or null (the newest run's best checkpoint)",
    ),
    Rule(
        "host",
        lambda v: isinstance(v, str) and v.strip() != "" and not any(c.isspace() or c in "/?#@" for c in v),
        "must be an address or host name, e.g. 127.0.0.1 (this machine only) or 0.0.0.0",
    ),
    integer("port", 0, 65535, note="0: any free port"),
    integer("max_pixels", 1),
    integer("max_body_bytes", 1, note="bytes"),
    Rule(
        "train_first",
        lambda v: isinstance(v, list) and all(isinstance(o, str) for o in v),
        "must be a list of src.train overrides, e.g. [trainer.max_epochs=1]",
    ),
]


def serve(cfg: DictConfig) -> None:
    check(cfg, RULES)  # before any work
    host = cfg.host.strip()
    sock = listen(host, cfg.port)  # a busy port is told now, not after a checkpoint is trained or loaded
    import torch
    import uvicorn

    from src.demo.readout import Readout
    from src.demo.server import create_app, is_loopback

    log_dir = Path(cfg.paths.log_dir)
    if cfg.ckpt_path:
        ckpt = Path(cfg.ckpt_path).expanduser()
    elif (ckpt := runs.newest_completed_checkpoint(log_dir)) is not None:
        print(f"No ckpt_path given: serving the newest completed run's best checkpoint, {ckpt}", flush=True)
    else:
        ckpt = train_first(log_dir, as_list(cfg.train_first))
    loaded = load_checkpoint(ckpt)  # a bad or unsafe file is refused here, before the server starts
    test_x, test_y = loaded.test_split(cfg.paths.data_dir)
    model = Readout(loaded, run_info(ckpt), test_x, test_y, cfg.max_pixels)
    # One image per request: intra-op threads cost more than they save, and the cores serve concurrent requests.
    torch.set_num_threads(1)
    app = create_app(model, cfg.max_body_bytes, host)

    port = sock.getsockname()[1]
    accuracy = model.describe()["test_set"]
    print(
        f"Checkpoint {ckpt} ({loaded.dataset}, {accuracy['accuracy']:.2%} of {accuracy['images']:,} test images "
        f"right, {accuracy['misclassified']} wrong)",
        flush=True,
    )
    if not is_loopback(host):
        log.warning(
            "host=%s: anyone who can reach this machine on the network can use this demo (port %d); "
            "host=127.0.0.1 keeps it to this machine",
            host,
            port,
        )
    shown_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown_host = "127.0.0.1"
    print(f"LeNet-5 demo at http://{shown_host}:{port}/ (Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, log_level="warning", lifespan="off", server_header=False
    )
    uvicorn.Server(config).run(sockets=[sock])


def train_first(log_dir: Path, overrides: list[str]) -> Path:
    """Train a checkpoint (``python -m src.train <overrides>``, a subprocess, as a user would); its best checkpoint."""
    shown = " ".join(["python -m src.train", *overrides])
    command = [sys.executable, "-m", "src.train", *overrides, f"paths.log_dir={log_dir}"]
    print(f"No completed training run under {log_dir}: training one first ({shown}).", flush=True)
    result = subprocess.run(command, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise UserError(f"training the checkpoint failed ({shown} exited {result.returncode})")
    ckpt = runs.newest_completed_checkpoint(log_dir)
    if ckpt is None:
        raise UserError(f"{shown} finished but left no completed run under {log_dir}")
    print(f"Trained {ckpt}", flush=True)
    return ckpt


def run_info(ckpt: Path) -> dict[str, Any]:
    """What the page says about the checkpoint: its recipe (the experiment), the overrides it was trained with, and its
    test accuracy, where its run folder has them."""
    info: dict[str, Any] = {"path": str(ckpt), "run": None, "recipe": None, "overrides": [], "test_acc": None}
    if (run := runs.run_of(ckpt)) is None:
        return info
    hidden = ("hydra.", "paths.", "callbacks.progress_bar", "experiment=")
    test_acc = ((runs.read_record(run) or {}).get("metrics") or {}).get("test/acc")
    info.update(
        run=str(run),
        recipe=runs.chosen_option(run, "experiment") or "default",
        overrides=[o for o in runs.overrides(run) if not o.startswith(hidden)],
        test_acc=float(test_acc) if isinstance(test_acc, (int, float)) else None,
    )
    return info


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: one the system picks), so that the address printed is the one served. Taken before
    the checkpoint is loaded (or trained): a browser that comes early waits in the queue until the page answers."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        busy = exc.errno in (errno.EADDRINUSE, errno.EACCES)
        raise UserError(
            f"host={host} port={port}: cannot listen there ({exc.strerror or exc})"
            + ("; port=0 picks a free port" if busy else "")
        ) from None
    return sock


main = hydra_entry_point(serve, "demo")


if __name__ == "__main__":
    main()
