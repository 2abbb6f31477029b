"""The report's tables: one row per run (report.csv and the first table of report.md), and per configuration (the
swept keys other than the seed) the mean ± std over its seeds, with the published result its recipe names."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

METRICS = ("val/acc_best", "test/acc", "test/loss")


def table_rows(runs: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    trust_keys = trust_columns(runs)

    def sort_key(run: dict[str, Any]) -> tuple[int, float]:
        return (run["status"] != "completed", -run["metrics"].get("val/acc_best", float("-inf")))

    rows = []
    for run in sorted(runs, key=sort_key):
        row = {"run": run["run"], **{k: run["overrides"].get(k, "(default)") for k in keys}}
        row.update({m: run["metrics"].get(m) for m in METRICS})
        row.update({k: run["trust"].get(k) for k in trust_keys})
        row["epochs"] = run["epochs"]
        row["status"] = run["status"] if run["status"] == "completed" else f"FAILED: {run['error'][:120]}"
        rows.append(row)
    return rows


def trust_columns(runs: list[dict[str, Any]]) -> list[str]:
    """The trust figures any run has, in a stable order."""
    return list(dict.fromkeys(k for run in runs for k in run["trust"]))


def trust_row(label: str, group: list[dict[str, Any]], columns: list[str]) -> str:
    """One configuration's trust figures over its seeds: mean ± std of each (over the runs that have it)."""
    cells = [label, sum(bool(run["trust"]) for run in group)]
    for column in columns:
        values = [run["trust"][column] for run in group if column in run["trust"]]
        cells.append("" if not values else "{:.4f} ± {:.4f}".format(*mean_std(values)))
    return "| " + " | ".join(str(c) for c in cells) + " |"


def by_configuration(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Completed runs with a test accuracy, grouped by configuration (the swept keys other than the seed)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        if run["status"] == "completed" and "test/acc" in run["metrics"]:
            # A key a run does not override has its default value: naming only the overridden ones keeps labels short
            label = ", ".join(f"{k}={run['overrides'][k]}" for k in keys if k != "seed" and k in run["overrides"])
            groups[label or "defaults"].append(run)
    return dict(groups)


def accuracies_of(group: list[dict[str, Any]]) -> list[float]:
    return [run["metrics"]["test/acc"] for run in group]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# Overrides that say where or how fast a run goes, not what it learns: a recipe's published result still applies.
NOT_RECIPE = (
    "experiment",
    "seed",
    "trainer",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.deterministic",
    "trainer.enable_progress_bar",
    "callbacks.progress_bar.refresh_rate",
    "callbacks.diagnostics.every_n_steps",  # diagnostics only watch: the weights trained are the same
    "callbacks.diagnostics.checks",
    "torch_threads",
    "reuse_cpu_memory",
    "data.pipeline",
    "data.data_dir",
    "logger",
    "hydra/launcher",
)


def reference_cell(run: dict[str, Any]) -> str:
    """The published result a run's recipe names, or why it does not apply (the run changed the recipe)."""
    reference = run["reference"] or {}
    if "test_acc" not in reference:
        return ""
    overrides = run["overrides"]
    changed = [f"{k}={v}" for k, v in sorted(overrides.items()) if k.lstrip("+~") not in NOT_RECIPE]
    if changed:
        return f"not comparable: the recipe is changed ({', '.join(changed)})"
    return f"{reference['test_acc']} ({reference.get('source', '')})"


def configuration_row(label: str, group: list[dict[str, Any]]) -> str:
    """One configuration over its seeds: accuracy mean ± std and range, epochs, fit time, size, the reference."""
    mean, std = mean_std(accuracies_of(group))
    val_mean = statistics.mean(run["metrics"].get("val/acc_best", float("nan")) for run in group)
    epochs = sorted({run["epochs"] for run in group if run["epochs"] is not None})
    seconds = [run["fit_seconds"] for run in group if run["fit_seconds"] is not None]
    params = sorted({run["params"] for run in group if run["params"] is not None})
    published = reference_cell(group[0])
    cells = [
        label,
        len(group),
        f"{mean:.4f}",
        f"{std:.4f}",
        f"{min(accuracies_of(group)):.4f}",
        f"{val_mean:.4f}",
        "/".join(map(str, epochs)),
        f"{statistics.mean(seconds):.0f}" if seconds else "",
        "/".join(f"{p:,}" for p in params),
        published,
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))


def write_tables(
    folder: Path, runs: list[dict[str, Any]], keys: list[str], groups: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """report.csv and report.md; returns the rows of the runs' table."""
    rows = table_rows(runs, keys)
    columns = list(rows[0])
    with open(folder / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Sweep report: {folder}",
        "",
        f"{len(runs)} runs, {sum(r['status'] != 'completed' for r in runs)} failed; "
        f"swept: {', '.join(keys) or 'nothing'}. Sorted by val/acc_best.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(fmt(row[c]) for c in columns) + " |" for row in rows]
    by_accuracy = sorted(groups.items(), key=lambda kv: -statistics.mean(accuracies_of(kv[1])))
    if groups:
        lines += [
            "",
            "## Test accuracy per configuration (mean ± std over seeds)",
            "",
            "| configuration | runs | test/acc mean | std | min | val/acc_best mean | epochs | fit s (mean) | "
            "parameters | published |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [configuration_row(label, group) for label, group in by_accuracy]
    trust = trust_columns(runs)
    if groups and trust:
        lines += [
            "",
            "## Trust per configuration (mean ± std over seeds; python -m src.trust)",
            "",
            "| configuration | runs with a report | " + " | ".join(trust) + " |",
            "|---|---|" + "---|" * len(trust),
        ]
        lines += [trust_row(label, group, trust) for label, group in by_accuracy]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    return rows
