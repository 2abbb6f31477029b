"""The sweep report, written: every run below a folder read, then its tables and pictures written into it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from src.core.errors import UserError
from src.report.charts import plot_report
from src.report.reading import load_runs, swept_keys
from src.report.tables import by_configuration, write_tables


def write_sweep_report(folder: Path) -> dict[str, Any]:
    """Read every run below ``folder``; write the report's tables and pictures into it."""
    runs = load_runs(folder)
    if not runs:
        raise UserError(f"no training runs below {folder} (folders with src.train's .hydra/config.yaml)")
    keys = swept_keys(runs)
    groups = by_configuration(runs, keys)
    rows = write_tables(folder, runs, keys, groups)
    gradients = plot_report(folder, runs, groups)
    return {"runs": len(runs), "swept": keys, "rows": rows, "gradients": gradients}
