"""``python -m src.bench``: the command line, and the driver that runs every variant and writes the report."""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

import src.bench
from src.bench.paired import PAIRED_LEVELS, paired_summary
from src.bench.plain import PLAIN_VARIANTS
from src.bench.recipe import AUGMENT, data_dir, recipe_overrides
from src.bench.results import combine, machine_info, write_results
from src.bench.worker import (
    lightning_command,
    round_command,
    run_process,
    run_variant,
    run_worker,
    worker_command,
    worker_result,
)
from src.core.config import PROJECT_ROOT
from src.data.datasets import ensure_files


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: no CUDA GPU is available on this machine")
    if args.tiny:
        args.epochs, args.rounds, args.tta_seeds, args.segment = min(args.epochs, 2), 1, "1", 2
    if args.worker:  # inside a worker process: run one plain loop and write its result
        return run_worker(args)

    ensure_files(data_dir(), "mnist")  # missing data: one clear error before any variant runs
    out = args.out or PROJECT_ROOT / "outputs" / "bench" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    jobs, paired_jobs = variant_commands(args, out, parser)
    results: dict[str, Any] = run_rounds(jobs, args, out)
    if paired_jobs:
        results["paired"] = run_paired_levels(paired_jobs, out)
    print(write_results(out, results, machine_info(args.accelerator), args))
    print(f"[bench] written to {out}")
    codes = [r["exit_code"] for name, r in results.items() if name != "paired"]
    codes += [r["exit_code"] or int(not r.get("segments")) for r in results.get("paired", {}).values()]
    return 0 if all(code == 0 for code in codes) else 1


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m src.bench", description=src.bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions of every variant")
    parser.add_argument(
        "--tta-seeds",
        default="1,2,3,4,5",
        help="seeds of experiment=fast_mnist's runs (time to 99%%), spread over the rounds",
    )
    parser.add_argument("--tiny", action="store_true", help="a few batches per variant (CI)")
    parser.add_argument("--limit", type=int, default=5, help="batches per stage in --tiny mode")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--segment", type=int, default=10, help="steps per segment of the paired measurement")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=OVERRIDES",
        help="another Lightning variant: a name and src.train overrides",
    )
    parser.add_argument("--worker", choices=[*PLAIN_VARIANTS, *PAIRED_LEVELS], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", help=argparse.SUPPRESS)
    return parser


VARIANTS = ("textbook", "raw", "lightning", "augment", "fast_mnist", "paired")
# test accuracy four times an epoch: the stopwatch stops within a quarter epoch of reaching the target
TIME_TO_ACCURACY = [
    "experiment=fast_mnist",
    "+callbacks.time_to_accuracy._target_=src.bench.time_to_accuracy.TimeToAccuracy",
    "+callbacks.time_to_accuracy.target=0.99",
    "trainer.val_check_interval=0.25",
]


def variant_commands(
    args: argparse.Namespace, out: Path, parser: argparse.ArgumentParser
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each variant's command (the timed ones, and the paired levels), from ``--variants`` and ``--extra``."""
    common = recipe_overrides(args.epochs, args.batch_size)
    jobs: dict[str, list[str]] = {}
    paired_jobs: dict[str, list[str]] = {}
    for name in args.variants.split(","):
        if name in PLAIN_VARIANTS:
            jobs[name] = worker_command(name, out, args, common)
        elif name == "paired":  # paired within each run: one run per level is enough
            paired_jobs = {level: worker_command(level, out, args, common) for level in PAIRED_LEVELS}
        elif name == "lightning":
            jobs[name] = lightning_command(args, out / name, common)
        elif name == "augment":  # what augmenting every training batch costs
            jobs[name] = lightning_command(args, out / name, [*common, f"augment={AUGMENT}"])
        elif name == "fast_mnist":
            tiny = ["trainer.max_epochs=1"] if args.tiny else []
            jobs[name] = lightning_command(args, out / name, [*TIME_TO_ACCURACY, *tiny])
        else:
            parser.error(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}")
    for extra in args.extra:
        name, _, overrides = extra.partition("=")
        jobs[name] = lightning_command(args, out / name, common + shlex.split(overrides))
    return jobs, paired_jobs


def run_rounds(jobs: dict[str, list[str]], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Every variant, round after round, each in its own process; their rounds combined. Rounds interleave the
    variants (A B C, A B C, ...) so a slow spell of a shared machine hits them all alike."""
    runs: dict[str, list[dict]] = {name: [] for name in jobs}
    seeds = [int(seed) for seed in args.tta_seeds.split(",")]
    for round_ in range(args.rounds):
        for name, cmd in jobs.items():
            if name == "fast_mnist":  # one run per seed, dealt out over the rounds (5 rounds, 5 seeds: one each)
                runs_here = [
                    (s, f"{name}.r{round_}.{k}.seed{s}") for k, s in enumerate(seeds) if k % args.rounds == round_
                ]
            else:
                runs_here = [(None, f"{name}.r{round_}")]
            for seed, tag in runs_here:
                round_cmd = round_command(cmd if seed is None else [*cmd, f"seed={seed}"], name, tag)
                print(f"[bench] round {round_ + 1}/{args.rounds} {name}: {shlex.join(round_cmd[1:])}", flush=True)
                runs[name].append({"round": round_, "seed": seed, **run_variant(name, round_cmd, out, tag)})
    return {name: combine(rounds, shlex.join(jobs[name][1:])) for name, rounds in runs.items()}


def run_paired_levels(paired_jobs: dict[str, list[str]], out: Path) -> dict[str, dict]:
    levels = {}
    for level, cmd in paired_jobs.items():
        print(f"[bench] paired {level}: {shlex.join(cmd[1:])}", flush=True)
        code, _ = run_process(cmd, out / f"{level}.log")
        summary = paired_summary(worker_result(out, level)) if code == 0 else {}
        levels[level] = {"exit_code": code, "command": shlex.join(cmd[1:]), **summary}
    return levels


if __name__ == "__main__":
    sys.exit(main())
