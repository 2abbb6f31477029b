"""Sweep report: ``python -m src.report <multirun folder | outputs/>``.

Reads every finished or failed run below the folder (its .hydra/config.yaml and overrides.yaml, metrics.json and
history.json) and writes into that folder: report.md and report.csv (one row per run, sorted by val/acc_best, the
swept keys as columns, failed runs marked), val_acc.png (validation accuracy per epoch, every run on one chart),
test_acc.png (test accuracy per configuration, mean +- std over seeds where several were run) and curves.png
(validation accuracy and training loss per epoch, per configuration: the mean over seeds with a +- std band; the
numbers drawn in curves.json) and, where runs recorded diagnostics (``callbacks.diagnostics.every_n_steps``),
gradients.png (each layer's weight-gradient norm per step, per configuration; numbers in gradients.json). The
per-configuration table also gives each configuration's epochs, fit time, parameter count and, for a recipe that
names one (``reference`` in conf/experiment/*.yaml), the published result it reproduces or beats. Runs with a trust
report (``python -m src.trust``, in ``<run>/trust/trust.json``) add its figures as columns, and a per-configuration
trust table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from src.core.errors import DiskFull, UserError
from src.core.storage import disk_full_cause, disk_full_message, unwritable_reason
from src.report.sweep import write_sweep_report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(args) != 1:
        print(f"usage: python -m src.report <multirun folder | outputs/> (got {len(args)} arguments)", file=sys.stderr)
        return 2
    folder = Path(args[0])
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    if (reason := unwritable_reason(folder)) is not None:
        print(f"error: {folder}: the report cannot be written there ({reason})", file=sys.stderr)
        return 2
    try:
        result = write_sweep_report(folder)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except Exception as exc:
        if (cause := disk_full_cause(exc)) is None:
            raise
        print(f"error: {disk_full_message(cause, folder)} The runs' own files are untouched.", file=sys.stderr)
        return DiskFull.exit_status
    print((folder / "report.md").read_text())
    print(
        f"wrote report.md, report.csv, val_acc.png, test_acc.png, curves.png, curves.json"
        f"{', gradients.png, gradients.json' if result['gradients'] else ''} to {folder} "
        f"({result['runs']} runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
