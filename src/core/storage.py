"""The disk under a run's folder: whether a folder can be written, how much room is left, a full disk told apart from
other errors, and files replaced whole (a write that fails half-way leaves the previous file as it was).

``OutputFolderCheck`` is a Hydra callback (conf/hydra/default.yaml): every command's run or sweep folder is probed
before Hydra creates it, so a folder that cannot be written is refused with one message and exit status 2 before any
work, where Hydra would otherwise fail with a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def unwritable_reason(folder: str | Path) -> str | None:
    """Why ``folder`` (created or not) cannot hold a run's files, or None if it can: its nearest existing ancestor
    must be a folder in which a file can be created (the probe is a temporary file, removed at once)."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())  # the root, at the latest
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"cannot create a file in {existing}: {exc.strerror or exc}"
    return None


def free_bytes(folder: str | Path) -> int:
    """Free space on the file system holding ``folder`` (or its nearest existing ancestor)."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.is_dir())
    return shutil.disk_usage(existing).free


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The "no space left" (or quota) error behind ``exc``, if any: torch.save reports a full disk as a RuntimeError
    raised while handling the OSError, so the whole chain of causes and contexts is searched."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL_DISK_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_message(cause: OSError, folder: str | Path) -> str:
    """The first sentence of every full-disk message: what failed, where, and the room left there now."""
    return f"Disk full: {cause.strerror} while writing to {folder} ({human_bytes(free_bytes(folder))} free there)."


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def replace_text(path: str | Path, text: str) -> None:
    """Write ``path`` whole or not at all: to a temporary file in the same folder, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class OutputFolderCheck(Callback):
    """Refuses a run (``hydra.run.dir``) or sweep (``hydra.sweep.dir``) folder that cannot be written, before Hydra
    creates it or anything runs: one message naming the folder and why, exit status 2."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        folder = OmegaConf.select(config, key)
        reason = unwritable_reason(folder)
        if reason is not None:
            # paths.log_dir moves the folder only where the command line did not set it
            given = any(str(o).startswith(f"{key}=") for o in OmegaConf.select(config, "hydra.overrides.hydra") or [])
            way_out = "" if given else ", or set paths.log_dir=<a writable folder>"
            print(
                f"Error: {key}={folder}: the output folder cannot be written ({reason}). Nothing was run. "
                f"Point {key}= at a folder you can write{way_out}.",
                file=sys.stderr,
            )
            sys.exit(2)
