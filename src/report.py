"""Sweep report: ``python -m src.report <multirun folder | outputs/>``.

Reads every finished or failed run below the folder (its .hydra/config.yaml and overrides.yaml, metrics.json and
history.json) and writes into that folder: report.md and report.csv (one row per run, sorted by val/acc_best, the
swept keys as columns, failed runs marked), val_acc.png (validation accuracy per epoch, every run on one chart),
test_acc.png (test accuracy per configuration, mean +- std over seeds where several were run) and curves.png
(validation accuracy and training loss per epoch, per configuration: the mean over seeds with a +- std band; the
numbers drawn in curves.json) and, where runs recorded diagnostics (``callbacks.diagnostics.every_n_steps``),
gradients.png (each layer's weight-gradient norm per step, per configuration; numbers in gradients.json). The
per-configuration
table also gives each configuration's epochs, fit time, parameter count and, for a recipe that names one
(``reference`` in conf/experiment/*.yaml), the published result it reproduces or beats. Runs with a trust report
(``python -m src.trust``, in ``<run>/trust/trust.json``) add its figures as columns, and a per-configuration trust table.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

METRICS = ("val/acc_best", "test/acc", "test/loss")
TRUST_EPSILONS = ("0.1", "0.3")  # the two attack strengths shown as columns


def find_runs(folder: Path) -> list[Path]:
    """Every run folder below ``folder`` (a folder with a .hydra/config.yaml), in a stable order."""
    return sorted({p.parent.parent for p in folder.rglob(".hydra/config.yaml")}, key=lambda p: str(p))


def load_run(run: Path, root: Path) -> dict[str, Any]:
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text()) or {}
    summary_path = run / "metrics.json"
    summary = (
        json.loads(summary_path.read_text())
        if summary_path.is_file()
        else {"status": "failed", "error": "no metrics.json (killed?)"}
    )
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
    from src.data.datasets import padded_size
    from src.errors import CheckpointError
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


def write_report(folder: Path) -> dict[str, Any]:
    runs = [load_run(r, folder) for r in find_runs(folder)]
    if not runs:
        raise SystemExit(f"No runs found below {folder} (looked for */.hydra/config.yaml)")
    keys = swept_keys(runs)
    rows = table_rows(runs, keys)
    columns = list(rows[0])

    with open(folder / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    groups = by_configuration(runs, keys)
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
    if groups:
        lines += [
            "",
            "## Test accuracy per configuration (mean ± std over seeds)",
            "",
            "| configuration | runs | test/acc mean | std | min | val/acc_best mean | epochs | fit s (mean) | "
            "parameters | published |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, group in sorted(groups.items(), key=lambda kv: -statistics.mean(accuracies_of(kv[1]))):
            lines.append(configuration_row(label, group))
    trust = trust_columns(runs)
    if groups and trust:
        lines += [
            "",
            "## Trust per configuration (mean ± std over seeds; python -m src.trust)",
            "",
            "| configuration | runs with a report | " + " | ".join(trust) + " |",
            "|---|---|" + "---|" * len(trust),
        ]
        for label, group in sorted(groups.items(), key=lambda kv: -statistics.mean(accuracies_of(kv[1]))):
            lines.append(trust_row(label, group, trust))
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    gradients = plot_report(folder, runs, groups)
    return {"runs": len(runs), "swept": keys, "rows": rows, "gradients": gradients}


CURVES = (("val/acc", "validation accuracy"), ("train/loss", "training loss"))


def curve_bands(groups: dict[str, list[dict[str, Any]]], key: str) -> dict[str, list[dict[str, float]]]:
    """Per configuration, per epoch (1-based): the mean and std over its runs of ``key`` in their history.json, and how
    many runs had it (a run stopped early has fewer epochs)."""
    bands = {}
    for label, group in groups.items():
        per_epoch: dict[int, list[float]] = defaultdict(list)
        for run in group:
            for row in run["history"]:
                if row.get(key) is not None:
                    per_epoch[row["epoch"] + 1].append(row[key])
        bands[label] = [
            {"epoch": epoch, "mean": mean, "std": std, "runs": len(values)}
            for epoch, values in sorted(per_epoch.items())
            for mean, std in [mean_std(values)]
        ]
    return bands


def plot_curves(folder: Path, groups: dict[str, list[dict[str, Any]]]) -> None:
    """curves.png: validation accuracy and training loss against epoch, one colour per configuration, the mean over
    its seeds as a line and a band of ± one std; curves.json holds the numbers drawn."""
    import matplotlib.pyplot as plt

    from src.plots import save

    bands = {key: curve_bands(groups, key) for key, _ in CURVES}
    (folder / "curves.json").write_text(json.dumps(bands, indent=1))
    fig, axes = plt.subplots(1, len(CURVES), figsize=(12, 4.5))
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for ax, (key, name) in zip(axes, CURVES):
        for i, label in enumerate(sorted(groups)):
            points = bands[key][label]
            if not points:
                continue
            epochs = [p["epoch"] for p in points]
            mean = [p["mean"] for p in points]
            low = [p["mean"] - p["std"] for p in points]
            high = [p["mean"] + p["std"] for p in points]
            colour = colours(i % colours.N)
            ax.plot(epochs, mean, color=colour, marker="o", markersize=3, label=f"{label} ({len(groups[label])})")
            ax.fill_between(epochs, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} (mean ± std over seeds)")
        ax.grid(alpha=0.3)
    if len(groups) <= 20:
        axes[0].legend(fontsize=6)
    fig.tight_layout()
    save(fig, folder / "curves.png")


GRAD_NORM_PREFIX = "diagnostics/grad_norm/"  # src/callbacks/diagnostics.py's tags: <prefix><layer>.weight, ...


def gradient_norms(run: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """A diagnosed run's gradient L2 norm of each layer's weight per recorded step, read back from its TensorBoard
    events with TensorBoard's own reader: {"conv1": [(step, norm), ...], ...}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run["folder"]), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag[len(GRAD_NORM_PREFIX) : -len(".weight")]: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag.startswith(GRAD_NORM_PREFIX) and tag.endswith(".weight")
    }


def gradient_bands(groups: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Per configuration with diagnosed runs, per layer, per recorded step: the mean and std over its runs of the
    layer's weight-gradient norm."""
    bands: dict[str, dict[str, list[dict[str, float]]]] = {}
    for label, group in groups.items():
        per_layer: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for run in group:
            if run.get("diagnosed"):
                for layer, points in gradient_norms(run).items():
                    for step, value in points:
                        per_layer[layer][step].append(value)
        if per_layer:
            bands[label] = {
                layer: [
                    {"step": step, "mean": mean, "std": std, "runs": len(values)}
                    for step, values in sorted(steps.items())
                    for mean, std in [mean_std(values)]
                ]
                for layer, steps in per_layer.items()
            }
    return bands


def plot_gradients(folder: Path, groups: dict[str, list[dict[str, Any]]]) -> bool:
    """gradients.png: for configurations whose runs recorded diagnostics, each layer's weight-gradient norm against
    the step (mean over seeds), one panel per configuration on one log scale: a layer that learns slowly is a low
    line. The numbers drawn go to gradients.json. False (nothing written) when no run was diagnosed."""
    import matplotlib.pyplot as plt

    from src.plots import save

    bands = gradient_bands(groups)
    if not bands:
        return False
    (folder / "gradients.json").write_text(json.dumps(bands, indent=1))
    labels = sorted(bands)
    columns = min(len(labels), 2)
    rows = -(-len(labels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns + 1, 4 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(labels) :]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, labels):
        for layer, points in bands[label].items():
            ax.plot([p["step"] for p in points], [p["mean"] for p in points], label=layer)
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_title(label, fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for row in axes:
        row[0].set_ylabel("weight gradient L2 norm (mean over seeds)")
    fig.tight_layout()
    save(fig, folder / "gradients.png")
    return True


def plot_report(folder: Path, runs: list[dict[str, Any]], groups: dict[str, list[dict[str, Any]]]) -> bool:
    """The report's pictures; True if it drew gradients.png."""
    import matplotlib.pyplot as plt

    from src.plots import save

    plot_curves(folder, groups)
    gradients = plot_gradients(folder, groups)

    fig, ax = plt.subplots(figsize=(9, 5))
    for run in runs:
        points = [(h["epoch"] + 1, h["val/acc"]) for h in run["history"] if "val/acc" in h]
        if points:
            ax.plot(
                *zip(*points),
                marker="o",
                label=f"{run['run']} " + " ".join(f"{k}={v}" for k, v in run["overrides"].items()),
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    if len(runs) <= 16:
        ax.legend(fontsize=6)
    fig.tight_layout()
    save(fig, folder / "val_acc.png")

    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(groups), 2) + 1.5))
    labels = sorted(groups, key=lambda k: statistics.mean(accuracies_of(groups[k])))
    means, stds = zip(*(mean_std(accuracies_of(groups[k])) for k in labels)) if labels else ((), ())
    ax.barh(labels, means, xerr=stds, color="tab:green", capsize=3)
    if means:
        ax.set_xlim(max(0.0, min(means) - 0.05), 1.0)
    ax.set_xlabel("test accuracy (mean ± std over seeds)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    save(fig, folder / "test_acc.png")
    return gradients


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    folder = Path(args[0])
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    result = write_report(folder)
    print((folder / "report.md").read_text())
    print(
        f"wrote report.md, report.csv, val_acc.png, test_acc.png, curves.png, curves.json"
        f"{', gradients.png, gradients.json' if result['gradients'] else ''} to {folder} "
        f"({result['runs']} runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
