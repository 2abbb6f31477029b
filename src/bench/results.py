"""The report: a variant's rounds combined, the table with its ratios (results.md, results.json) and the chart."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from src.bench.paired import PAIRED_LEVELS
from src.bench.recipe import AUGMENT, LR, MOMENTUM

TRAIN_IMAGES = 55_000


def timed_epochs(seconds: list[float]) -> list[float]:
    """A run's epoch times without its first epoch (start-up, first-call allocations), unless it had only one."""
    return seconds[1:] or seconds


def combine(rounds: list[dict], command: str) -> dict:
    """One variant's rounds -> the figures reported: epochs after each round's first, pooled; the worst memory."""
    ok = [r for r in rounds if r["exit_code"] == 0 and "error" not in r]
    combined: dict[str, Any] = {"command": command, "rounds": rounds, "exit_code": max(r["exit_code"] for r in rounds)}
    if not ok:
        return combined
    combined["epoch_seconds"] = [s for r in ok for s in timed_epochs(r["epoch_seconds"])]
    combined["round_medians"] = [
        statistics.median(timed_epochs(r["epoch_seconds"])) if r in ok else None for r in rounds
    ]
    if all("train_seconds" in r for r in ok):  # the plain loops: each epoch's training alone, without its validation
        combined["train_seconds"] = [s for r in ok for s in timed_epochs(r["train_seconds"])]
    combined["test_acc"] = statistics.median(r["test_acc"] for r in ok if r.get("test_acc") is not None)
    combined["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    if any("peak_gpu_mb" in r for r in ok):
        combined["peak_gpu_mb"] = max(r.get("peak_gpu_mb", 0) for r in ok)
    return combined


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # the CPU features the fast paths use


def machine_info(accelerator: str) -> dict[str, str]:
    import lightning

    cpu, flags = platform.processor() or platform.machine(), None  # None: no /proc/cpuinfo (not Linux)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if flags is not None:
        cpu += f" ({' '.join(f for f in SPEED_FLAGS if f in flags) or 'none of ' + ' '.join(SPEED_FLAGS)})"
    info = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}",
    }
    if accelerator == "gpu" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_results(out: Path, results: dict[str, dict], info: dict[str, str], args: argparse.Namespace) -> str:
    """results.md (returned: the variants' table, their ratios, the paired table, the time to 99%), results.json
    and chart.png."""
    medians = {name: statistics.median(r["epoch_seconds"]) for name, r in variants(results) if "epoch_seconds" in r}
    lines = [
        *variants_table(results, medians, info, args),
        *ratio_lines(results, medians),
        *paired_table(results.get("paired", {}), args.segment),
        *time_to_accuracy_lines(results.get("fast_mnist", {}), results.get("raw", {})),
    ]
    report = "\n".join(lines) + "\n"
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(json.dumps({"info": info, "results": results}, indent=2))
    plot(out / "chart.png", medians, info)
    return report


def variants(results: dict[str, dict]) -> list[tuple[str, dict]]:
    """The timed variants (each a whole process per round); the paired levels are measured otherwise."""
    return [(name, r) for name, r in results.items() if name != "paired"]


def variants_table(
    results: dict[str, dict], medians: dict[str, float], info: dict[str, str], args: argparse.Namespace
) -> list[str]:
    rows = []
    for name, r in variants(results):
        if name not in medians:
            rows.append(f"| {name} | failed (exit {r.get('exit_code')}) | | | |")
            continue
        images = (args.limit * args.batch_size) if args.tiny else TRAIN_IMAGES
        memory = f"{r['peak_rss_mb']:.0f}" + (f" (GPU {r['peak_gpu_mb']:.0f})" if "peak_gpu_mb" in r else "")
        acc = f"{r['test_acc']:.4f}" if r.get("test_acc") is not None else "n/a"
        label = f"lightning, augment={AUGMENT}" if name == "augment" else name
        rows.append(f"| {label} | {medians[name]:.3f} | {images / medians[name]:,.0f} | {acc} | {memory} |")
    return [
        f"Benchmark, {info['date']}: {info['machine']}{', ' + info['gpu'] if 'gpu' in info else ''}; {info['versions']}.",
        f"MNIST, LeNet-5 (ReLU, max pooling), SGD lr {LR} momentum {MOMENTUM}, batch {args.batch_size}, "
        f"{args.epochs} epochs{' (tiny mode: a few batches, not a speed measurement)' if args.tiny else ''}; "
        f"epoch = train on 55,000 images + validate on 5,000; median over the epochs after the first of each of "
        f"{args.rounds} interleaved rounds; test acc: median over rounds.",
        "",
        "| variant | median epoch s | train images/s | test acc | peak memory MiB |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


RATIOS = (  # raw / textbook is the floor under lightning / textbook: the same ratio with no Lightning at all
    ("lightning", "textbook", ""),
    ("lightning", "raw", ""),
    ("raw", "textbook", "; the floor for lightning / textbook"),
    ("augment", "lightning", f"; what augment={AUGMENT} costs per epoch"),
)


def ratio_lines(results: dict[str, dict], medians: dict[str, float]) -> list[str]:
    lines = []
    for name, ref, why in RATIOS:
        if name in medians and ref in medians:
            # Paired by round: both ran minutes apart, so a slow spell of the machine cancels out of the ratio.
            paired = [
                a / b
                for a, b in zip(results[name]["round_medians"], results[ref]["round_medians"])
                if a is not None and b is not None
            ]
            lines.append(
                f"- {name} / {ref}: {medians[name] / medians[ref]:.3f} (ratio of the medians above); "
                f"per round {statistics.median(paired):.3f} median, {min(paired):.3f}-{max(paired):.3f} range "
                f"({len(paired)} rounds){why}"
            )
    return lines


def paired_table(levels: dict[str, dict], segment: int) -> list[str]:
    if not levels:
        return []
    lines = [
        "",
        f"Lightning's cost per training step, paired: in one process, segments of {segment} Lightning "
        f"steps alternate with {segment} steps of the raw loop (its own network, optimizer and data); "
        "ms per step are means over the segments after the first epoch, the ratio is Lightning's total time "
        "over the raw loop's, with the quartiles of the segments' own ratios. Validation and epoch-end work "
        "(metrics, checkpoints) are not in these figures.",
        "",
        "| Lightning as | Lightning ms/step | raw loop ms/step | paired ratio (quartiles) | segments |",
        "|---|---|---|---|---|",
    ]
    for level, r in levels.items():
        if not r.get("segments"):
            why = f"failed (exit {r['exit_code']})" if r["exit_code"] else f"no complete {segment}-step segment"
            lines.append(f"| {level}: {PAIRED_LEVELS[level]} | {why} | | | |")
            continue
        lines.append(
            f"| {level}: {PAIRED_LEVELS[level]} | {r['lightning_ms']:.2f} | {r['plain_ms']:.2f} | "
            f"{r['ratio']:.3f} ({r['ratio_q1']:.3f}-{r['ratio_q3']:.3f}) | {r['segments']} |"
        )
    return [*lines, ""]


def time_to_accuracy_lines(tta: dict[str, Any], raw: dict[str, Any]) -> list[str]:
    """Each seed's seconds of training to 99.0% test accuracy, and the same in raw-loop epochs: the raw loop's median
    epoch of training alone (its validation left out, as the clock leaves validations out), in the seed's own round
    (paired: both ran minutes apart) and over all rounds. A failed run or one that never reached 99% is a row too."""
    runs = tta.get("rounds", [])
    if not runs:
        return []
    raw_epoch = statistics.median(raw["train_seconds"]) if raw.get("train_seconds") else None
    raw_by_round = {
        r["round"]: statistics.median(timed_epochs(r["train_seconds"]))
        for r in raw.get("rounds", [])
        if r.get("exit_code") == 0 and r.get("train_seconds")
    }
    rows, reached, paired_ratios = [], 0, []
    for r in runs:
        seconds = r.get("seconds_to_target")
        if r.get("exit_code") != 0 or "error" in r:
            why = r.get("error") or f"exit {r.get('exit_code')}"
            rows.append(f"| {r['seed']} | failed ({why}) | | |")
            continue
        if seconds is None:
            best = max((a for _, a in r.get("tta_curve", [])), default=float("nan"))
            rows.append(f"| {r['seed']} | not reached (best {best:.4f}) | | |")
            continue
        reached += 1
        paired = seconds / raw_by_round[r["round"]] if r["round"] in raw_by_round else None
        if paired is not None:
            paired_ratios.append(paired)
        pooled = f"{seconds / raw_epoch:.2f}" if raw_epoch else "n/a"
        rows.append(f"| {r['seed']} | {seconds:.2f} | {pooled} | {'n/a' if paired is None else f'{paired:.2f}'} |")
    summary = f"- {reached} of {len(runs)} seeds reached 99.0%"
    if paired_ratios:
        unpaired = reached - len(paired_ratios)
        summary += f"; the slowest in {max(paired_ratios):.2f} raw-loop epochs of time (paired by round)"
        summary += f", {unpaired} without a raw run in its round" if unpaired else ""
    return [
        "",
        f"Time to 99.0% MNIST test accuracy, experiment=fast_mnist (checked four times an epoch; training time only; "
        f"raw-loop epoch of training alone: {'n/a' if raw_epoch is None else f'{raw_epoch:.3f} s'}, median):",
        "",
        "| seed | seconds of training | raw-loop epochs (all rounds' median) | raw-loop epochs (its round's) |",
        "|---|---|---|---|",
        *rows,
        "",
        summary,
    ]


def plot(path: Path, medians: dict[str, float], info: dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 * len(medians) + 1.5))
    names = list(medians)[::-1]
    bars = ax.barh(names, [medians[n] for n in names], color="tab:blue")
    ax.bar_label(bars, fmt="%.2f s", padding=3)
    ax.set_xlabel("median seconds per epoch (lower is better)")
    ax.set_title(f"LeNet-5 on MNIST, {info.get('gpu', 'CPU')}", fontsize=10)
    ax.margins(x=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
