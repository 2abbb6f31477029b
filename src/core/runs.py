"""Run folders, as ``src.train`` leaves them: finding them, their checkpoints, and their record.

A run folder holds ``.hydra/`` (config.yaml, overrides.yaml, hydra.yaml), ``checkpoints/`` and ``metrics.json``, the
run's record: its status (``completed`` or ``failed``), final metrics and best checkpoint. The tools read runs only
through here: ``src.report`` (a sweep's runs), ``src.trust`` (each run's best checkpoint) and ``src.demo`` (the
newest finished run's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from src.core.storage import replace_text

RECORD = "metrics.json"
# The diagnostics callback's gradient norms in a run's TensorBoard events, + <layer>.weight, <layer>.bias or total:
# src.report reads them back (here, so that it reads them without importing Lightning).
GRAD_NORM_TAG = "diagnostics/grad_norm/"


def find_runs(folder: Path) -> list[Path]:
    """Every run folder in or below ``folder`` (a folder with ``.hydra/config.yaml``), in a stable order."""
    return sorted({p.parent.parent for p in Path(folder).rglob(".hydra/config.yaml")}, key=str)


def run_of(ckpt: Path) -> Path | None:
    """The run a checkpoint belongs to (``<run>/checkpoints/<name>.ckpt`` beside ``<run>/.hydra``), if any."""
    ckpt = Path(ckpt).resolve()
    run = ckpt.parent.parent
    return run if ckpt.parent.name == "checkpoints" and (run / ".hydra").is_dir() else None


def read_record(run: Path) -> dict[str, Any] | None:
    """A run's ``metrics.json``; None where there is none, or where it is not one of ours (half-written, foreign)."""
    try:
        record = json.loads((Path(run) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(run: Path, record: dict[str, Any]) -> None:
    """Write the run's record whole or not at all (on a full disk, the record before it stays readable)."""
    Path(run).mkdir(parents=True, exist_ok=True)
    replace_text(Path(run) / RECORD, json.dumps(record, indent=2))


def is_completed(run: Path) -> bool:
    return (read_record(run) or {}).get("status") == "completed"


def overrides(run: Path) -> list[str]:
    """The overrides the run was started with, as typed (``.hydra/overrides.yaml``)."""
    try:
        given = yaml.safe_load((Path(run) / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return []
    return [o for o in given if isinstance(o, str)] if isinstance(given, list) else []


def chosen_option(run: Path, group: str) -> str | None:
    """The option a config group had in the run (``experiment``: the recipe), from ``.hydra/hydra.yaml``."""
    try:
        hydra = yaml.safe_load((Path(run) / ".hydra" / "hydra.yaml").read_text()) or {}
        return hydra["hydra"]["runtime"]["choices"].get(group)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None


def best_checkpoint(run: Path) -> Path | None:
    """A run's best checkpoint (its record's ``best_checkpoint``; else the ``best-*`` file with the highest accuracy in
    its name), else its ``last.ckpt``; None for a run without checkpoints."""
    folder = Path(run) / "checkpoints"
    named = (read_record(run) or {}).get("best_checkpoint")
    if isinstance(named, str) and named and (folder / Path(named).name).is_file():
        return folder / Path(named).name
    best = sorted(folder.glob("best-*.ckpt"), key=lambda p: p.stem.rsplit("acc", 1)[-1])
    if best:
        return best[-1]
    return folder / "last.ckpt" if (folder / "last.ckpt").is_file() else None


def newest_completed_checkpoint(log_dir: Path) -> Path | None:
    """The best checkpoint of the newest completed run under ``log_dir`` (by its record's time): a run whose record
    says ``"status": "completed"`` and whose ``best_checkpoint`` file exists."""
    found: list[tuple[float, Path]] = []
    for record_file in Path(log_dir).rglob(RECORD):
        record = read_record(record_file.parent) or {}
        best = record.get("best_checkpoint")
        if record.get("status") == "completed" and isinstance(best, str) and best and Path(best).is_file():
            found.append((record_file.stat().st_mtime, Path(best)))
    return max(found, key=lambda item: item[0])[1] if found else None
