"""A sweep's runs, read for its report: each run's overrides, record, history, recipe reference, network size and
trust figures (``src.core.runs`` reads the folders)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from src.core import runs as run_folders

TRUST_EPSILONS = ("0.1", "0.3")  # the two attack strengths shown as columns


def load_runs(folder: Path) -> list[dict[str, Any]]:
    """Every run in or below ``folder``."""
    return [load_run(run, folder) for run in run_folders.find_runs(folder)]


def load_run(run: Path, root: Path) -> dict[str, Any]:
    """What the report shows of one run; a run without a record is a failed one (killed?)."""
    overrides = run_folders.overrides(run)
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text()) or {}
    summary = run_folders.read_record(run) or {"status": "failed", "error": "no metrics.json (killed?)"}
    history_path = run / "history.json"
    return {
        "run": str(run.relative_to(root)) if run != root else ".",
        "overrides": dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("hydra.", "paths."))),
        "status": summary.get("status", "completed"),
        "error": summary.get("error", ""),
        "metrics": summary.get("metrics", {}),
        "epochs": summary.get("epochs"),
        "fit_seconds": summary.get("fit_seconds"),
        "history": json.loads(history_path.read_text()) if history_path.is_file() else [],
        "reference": config.get("reference"),
        "params": parameter_count(config.get("model"), config.get("data") or {}),
        "trust": trust_figures(run / "trust" / "trust.json"),
        "folder": run,
        # callbacks.diagnostics.every_n_steps > 0: the run's TensorBoard events hold per-layer gradient norms
        "diagnosed": bool(((config.get("callbacks") or {}).get("diagnostics") or {}).get("every_n_steps")),
    }


def trust_figures(path: Path) -> dict[str, float]:
    """The figures a sweep compares from a run's trust report (``python -m src.trust``), if it has one: ECE before and
    after temperature scaling, the mean corruption accuracy, and each attack's accuracy at TRUST_EPSILONS."""
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    row: dict[str, float] = {}
    if "calibration" in report:
        row["ece"], row["ece_scaled"] = report["calibration"]["ece"], report["calibration"]["ece_scaled"]
    if "corruptions" in report:
        row["corruption_acc"] = report["corruptions"]["mean"]
    for attack, curve in (report.get("attacks") or {}).get("accuracy", {}).items():
        row.update({f"{attack}_acc@{e}": curve[e] for e in TRUST_EPSILONS if e in curve})
    return row


def parameter_count(model: dict[str, Any] | None, data: dict[str, Any]) -> int | None:
    """The network's size for a run's ``model`` and ``data`` config (None for a config this version cannot build).

    The input size is the one ``data.pad`` gives: a run folder's config keeps the interpolation, not its value."""
    if not model:
        return None
    from src.core.config import padded_size
    from src.core.errors import CheckpointError
    from src.models import build_network

    try:
        network = build_network({**model, "input_size": padded_size(data.get("pad", 2))})
    except (TypeError, ValueError, CheckpointError):
        return None
    return sum(p.numel() for p in network.parameters())


def swept_keys(runs: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between runs: the axes of the sweep."""
    values: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        for key in {k for r in runs for k in r["overrides"]}:
            values[key].add(run["overrides"].get(key, "(default)"))
    return sorted(k for k, v in values.items() if len(v) > 1)
