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
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.core.storage import replace_text

RECORD = "metrics.json"
HYDRA_RECORD = ("config.yaml", "hydra.yaml", "overrides.yaml")  # what Hydra writes in .hydra/ (hydra.output_subdir)
# The diagnostics callback's gradient norms in a run's TensorBoard events, + <layer>.weight, <layer>.bias or total:
# src.report reads them back (here, so that it reads them without importing Lightning).
GRAD_NORM_TAG = "diagnostics/grad_norm/"


def find_runs(folder: Path) -> list[Path]:
    """Every training run in or below ``folder`` (a folder with ``.hydra/config.yaml``, made by src.train), in a stable
    order; the other commands' folders beside them (``outputs/eval/...``) are not runs."""
    configs = Path(folder).rglob(".hydra/config.yaml")
    return sorted({p.parent.parent for p in configs if _command(p.parent) in ("train", None)}, key=str)


def _command(record: Path) -> str | None:
    """The config a run folder's command composed (``train`` for src.train: Hydra's ``job.config_name``, which a
    ``task_name=`` override leaves as it is); None where its ``hydra.yaml`` cannot say."""
    try:
        return yaml.safe_load((record / "hydra.yaml").read_text())["hydra"]["job"]["config_name"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


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


# An earlier run's record files in the folder this run was pointed at, as they were before Hydra wrote this run's
# over them (None: the file was not there): put back if this run is refused.
_earlier_record: dict[Path, bytes | None] = {}


class EarlierRecord(Callback):
    """``hydra.run.dir=<an earlier run's folder>``: Hydra writes the new run's ``.hydra/`` over the earlier run's
    before any check can refuse the new run. This Hydra callback keeps the earlier run's record (``.hydra/`` and
    ``metrics.json``) first, so that a run refused before any work leaves it as it was (``restore_earlier_record``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _earlier_record.clear()
        folder, subdir = OmegaConf.select(config, "hydra.run.dir"), OmegaConf.select(config, "hydra.output_subdir")
        if folder is None or subdir is None or not (Path(folder) / subdir / "config.yaml").is_file():
            return  # a new folder: the refused run's own record is what it should keep
        record = Path(folder).absolute() / subdir  # absolute: hydra.job.chdir=true moves the task into the folder
        for path in [*(record / name for name in HYDRA_RECORD), record.parent / RECORD]:
            _earlier_record[path] = path.read_bytes() if path.is_file() else None


def restore_earlier_record() -> None:
    """Put back the earlier run's record that ``EarlierRecord`` kept (nothing when the folder was new)."""
    for path, content in _earlier_record.items():
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)
    _earlier_record.clear()


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
