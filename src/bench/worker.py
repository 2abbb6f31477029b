"""How a variant runs in its own process (so its peak memory is its own) and how its result is read back.

The plain loops and the paired levels run as ``python -m src.bench --worker NAME --result FILE ...``, which writes
its result as JSON to FILE; the Lightning variants run as ``python -m src.train`` and are read back from their
TensorBoard events and metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from src.bench.paired import PAIRED_LEVELS, run_paired
from src.bench.plain import PLAIN_VARIANTS, run_plain_loop
from src.core.config import PROJECT_ROOT


def run_process(cmd: list[str], log_path: Path) -> tuple[int, float]:
    """Run a command, logging its output; return its exit code and its own peak resident memory in MiB."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024  # Linux reports KiB


def worker_command(name: str, out: Path, args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """The command that runs a plain loop or a paired level in a worker process, its result going to out/NAME.json."""
    return [
        sys.executable,
        "-m",
        "src.bench",
        "--worker",
        name,
        "--result",
        str(out / f"{name}.json"),
        f"--epochs={args.epochs}",
        f"--accelerator={args.accelerator}",
        f"--limit={args.limit}",
        f"--segment={args.segment}",
        *(["--tiny"] if args.tiny else []),
        "--overrides",
        json.dumps(overrides),
    ]


def run_worker(args: argparse.Namespace) -> int:
    """Inside a worker process: run one plain loop or paired level and write its result."""
    limit, overrides = args.limit if args.tiny else None, json.loads(args.overrides)
    if args.worker in PAIRED_LEVELS:
        output_dir = args.result.with_suffix("")
        result = run_paired(args.worker, args.accelerator, limit, args.segment, overrides, output_dir)
    else:
        result = run_plain_loop(args.worker, args.epochs, args.accelerator, limit, overrides)
    args.result.write_text(json.dumps(result))
    return 0


def worker_result(out: Path, tag: str) -> dict:
    """What the worker tagged ``tag`` wrote."""
    return json.loads((out / f"{tag}.json").read_text())


def lightning_command(args: argparse.Namespace, run_dir: Path, overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "src.train", f"hydra.run.dir={run_dir}", f"trainer.accelerator={args.accelerator}"]
    if args.tiny:
        cmd += [f"trainer.limit_{s}_batches={args.limit}" for s in ("train", "val", "test")]
    return cmd + overrides


def lightning_result(run_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    summary = json.loads((run_dir / "metrics.json").read_text())
    if "time/epoch_s" not in acc.Tags()["scalars"]:
        return {"error": "no time/epoch_s logged: keep callbacks.epoch_throughput in an --extra variant"}
    result = {
        "epoch_seconds": [s.value for s in acc.Scalars("time/epoch_s")],
        "test_acc": summary["metrics"].get("test/acc"),
    }
    if "peak_gpu_mb" in summary:
        result["peak_gpu_mb"] = summary["peak_gpu_mb"]
    if "tta/seconds_to_target" in acc.Tags()["scalars"]:
        result["seconds_to_target"] = acc.Scalars("tta/seconds_to_target")[-1].value
    result["tta_curve"] = (
        [(s.value, t.value) for s, t in zip(acc.Scalars("tta/train_s"), acc.Scalars("tta/test_acc"))]
        if "tta/test_acc" in acc.Tags()["scalars"]
        else []
    )
    return result


def round_command(cmd: list[str], name: str, tag: str) -> list[str]:
    """A variant's command for one round: its own run directory or result file, named by ``tag``."""
    round_cmd = [c.replace(f"/{name}", f"/{tag}") if c.startswith("hydra.run.dir=") else c for c in cmd]
    return [c.replace(f"{name}.json", f"{tag}.json") for c in round_cmd]


def run_variant(name: str, cmd: list[str], out: Path, tag: str) -> dict:
    """Run one round of a variant, logging to out/TAG.log: its exit code, peak memory and result."""
    code, rss = run_process(cmd, out / f"{tag}.log")
    result: dict[str, Any] = {"exit_code": code, "peak_rss_mb": rss}
    if code == 0:
        result.update(worker_result(out, tag) if name in PLAIN_VARIANTS else lightning_result(out / tag))
    else:
        print(f"[bench] {name} failed with exit code {code}; see {out / (tag + '.log')}", flush=True)
    return result
