"""Benchmark: where LeNet-5's training time goes, measured side by side in one run on one machine.

    python -m src.bench                      # CPU, MNIST, batch 256, 4 epochs per variant
    python -m src.bench --accelerator gpu    # the same on a GPU
    python -m src.bench --tiny               # a few batches per variant: checks the plumbing, not speed

Variants (same LeNet-5, SGD lr 0.05 momentum 0.9, batch size and epochs; each epoch = train + validate):
  textbook   plain PyTorch as the tutorials write it: torchvision MNIST, PIL transforms, DataLoader
  raw        plain PyTorch over the tensor-resident data (the lower bound for this model)
  lightning  ``python -m src.train`` as users run it (logging, checkpointing and progress bar on)
plus ``--extra NAME=OVERRIDES`` for more Lightning variants (e.g. ``--extra "bf16=trainer.precision=bf16-mixed"``),
and the time to 99.0% MNIST test accuracy for ``experiment=fast_mnist``. Each variant runs in its own process so
its peak memory is its own. ``paired`` then measures Lightning's cost per training step at three levels (an empty
LightningModule, LitLeNet5, the full src.train pipeline), each in one process where segments of Lightning steps
alternate with segments of raw-loop steps, so that the machine's slow spells cancel out of the ratio.
Results go to ``outputs/bench/<time>/``: results.json, results.md and chart.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from src.config import PROJECT_ROOT
from src.runtime import configure_runtime

SEED, LR, MOMENTUM = 42, 0.05, 0.9  # the benchmark's recipe for every variant
TRAIN_IMAGES = 55_000


def data_dir() -> str:
    return os.environ.get("DATA_DIR", str(PROJECT_ROOT / "data"))


# -- the two plain-PyTorch variants, each run in a worker process ------------------------------------------
def textbook_loaders(batch_size: int) -> tuple[Any, Any, Any]:
    """The tutorials' pipeline: torchvision dataset + PIL transforms + DataLoader (same split as src.data)."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [transforms.Pad(2), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    train = datasets.MNIST(data_dir(), train=True, transform=transform)
    test = datasets.MNIST(data_dir(), train=False, transform=transform)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    return (
        DataLoader(Subset(train, order[5000:].tolist()), batch_size=batch_size, shuffle=True),
        DataLoader(Subset(train, order[:5000].tolist()), batch_size=batch_size),
        DataLoader(test, batch_size=batch_size),
    )


def compose_config(overrides: list[str]) -> Any:
    """The same composed config ``src.train`` would run with these overrides."""
    from hydra import compose, initialize_config_dir

    from src.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def evaluate(net: torch.nn.Module, loader: Any, device: torch.device, limit: int | None) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for i, (x, y) in enumerate(loader):
            if limit is not None and i >= limit:
                break
            x, y = x.to(device), y.to(device)
            correct += (net(x).argmax(1) == y).sum()
            total += len(y)
    net.train()
    return float(correct) / max(total, 1)


def plain_setup(cfg: Any, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    """Network, optimizer and tensor-resident data on ``device``, built from a composed config as src.train does."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from src.models import lenet5_from_config

    net = lenet5_from_config(OmegaConf.to_container(cfg.model)).to(device)
    opt = instantiate(cfg.optimizer)(net.parameters())
    dm = instantiate(cfg.data)
    dm.setup(device=device)
    return net, opt, dm


def plain_step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run_plain_loop(variant: str, epochs: int, accelerator: str, limit: int | None, overrides: list[str]) -> dict:
    """Train with a plain PyTorch loop. ``raw`` takes model, optimizer and data settings from the composed config,
    exactly as ``src.train`` would, so the only difference left is Lightning; ``textbook`` is the tutorials' code."""
    from src.models import LeNet5

    cfg = compose_config(overrides)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    if variant == "raw":
        configure_runtime(cfg)  # the process settings src.train makes (threads, CPU memory reuse)
    torch.manual_seed(cfg.seed)
    if variant == "textbook":
        train, val, test = textbook_loaders(cfg.data.batch_size)
        net = LeNet5(activation=cfg.model.activation, pooling=cfg.model.pooling).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum)
    else:
        net, opt, dm = plain_setup(cfg, device)
        train, val, test = dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()
    epoch_seconds = []
    for epoch in range(epochs):
        if hasattr(train, "sampler") and hasattr(train.sampler, "set_epoch"):
            train.sampler.set_epoch(epoch)
        start = time.perf_counter()
        for i, (x, y) in enumerate(train):
            if limit is not None and i >= limit:
                break
            plain_step(net, opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        evaluate(net, val, device, limit)  # validation each epoch, as the Lightning run does
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - start)
    result = {"epoch_seconds": epoch_seconds, "test_acc": evaluate(net, test, device, limit)}
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# -- Lightning's cost per step, paired with a plain loop in the same process -----------------------------------
PAIRED_LEVELS = {
    "minimal": "an empty LightningModule (forward + loss) in a bare Trainer: Lightning's own loop",
    "module": "src's LitLeNet5 (metrics, logging) in a bare Trainer",
    "pipeline": "src.train's Trainer as users run it (logger, progress bar, all its callbacks)",
}


class PlainStepsBetween(L.Callback):
    """After every ``segment`` Lightning training steps, times them, then runs and times ``segment`` plain-loop steps.

    The plain loop has its own network, optimizer and data, built from the same config. Both kinds of segment run
    seconds apart in one process, so a slow spell of a shared machine falls on both alike and cancels out of each
    segment's ratio. A segment never spans an epoch's end or a validation (one that validation interrupts is
    dropped), so validation and the epoch-end work (metrics, checkpoints) are not counted.
    """

    def __init__(self, cfg: Any, device: torch.device, segment: int) -> None:
        self.device, self.segment = device, segment
        self.net, self.opt, dm = plain_setup(cfg, device)
        self.loader, self.batches = dm.train_dataloader(), iter(())
        self.lightning_ms: list[list[float]] = []  # per epoch, per segment: ms per step
        self.plain_ms: list[list[float]] = []

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lightning_ms.append([])
        self.plain_ms.append([])
        self._steps, self._start = 0, None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._steps, self._start = 0, None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
        if self._start is None:
            self._start = self._now()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, out: Any, batch: Any, i: int) -> None:
        self._steps += 1
        if self._steps % self.segment:
            return
        start = self._now()
        self.lightning_ms[-1].append((start - self._start) / self.segment * 1e3)
        for _ in range(self.segment):
            plain_step(self.net, self.opt, *self._next_batch())
        self._start = self._now()
        self.plain_ms[-1].append((self._start - start) / self.segment * 1e3)


class MinimalLitLeNet5(L.LightningModule):
    """The least a LightningModule can be: the same network, loss and optimizer, nothing logged or measured."""

    def __init__(self, cfg: Any) -> None:
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        from src.models import lenet5_from_config

        super().__init__()
        self.net = lenet5_from_config(OmegaConf.to_container(cfg.model))
        self.optimizer_fn = instantiate(cfg.optimizer)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_fn(self.parameters())


def run_paired(level: str, accelerator: str, limit: int | None, segment: int, overrides: list[str],
               output_dir: Path) -> dict:  # fmt: skip
    """Fit at one ``PAIRED_LEVELS`` level with plain-loop segments in between; per-segment ms/step of each.
    Epochs, data, model and optimizer all come from the composed config, at every level."""
    from hydra.utils import instantiate

    from src.train import build, build_model

    limits = [f"trainer.limit_{stage}_batches={limit}" for stage in ("train", "val")] if limit is not None else []
    cfg = compose_config([*overrides, *limits, f"paths.output_dir={output_dir}", f"trainer.accelerator={accelerator}"])
    configure_runtime(cfg)
    L.seed_everything(cfg.seed)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    steps = PlainStepsBetween(cfg, device, segment)
    if level == "pipeline":
        datamodule, model, trainer = build(cfg)
        trainer.callbacks.append(steps)
    else:
        datamodule = instantiate(cfg.data)
        model = MinimalLitLeNet5(cfg) if level == "minimal" else build_model(cfg)
        trainer = L.Trainer(accelerator=accelerator, devices=1, max_epochs=cfg.trainer.max_epochs,
                            limit_train_batches=limit, limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[steps])  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    return {"lightning_ms": steps.lightning_ms, "plain_ms": steps.plain_ms}


def paired_summary(result: dict) -> dict:
    """Segments after the first epoch (warm-up) unless there was only one: mean ms per step of each loop, their
    ratio (total Lightning time over total raw-loop time, so work done only every few segments, like logging,
    counts in full) and the quartiles of the segments' own ratios (the spread)."""
    first = 1 if len(result["lightning_ms"]) > 1 else 0
    lightning = [ms for epoch in result["lightning_ms"][first:] for ms in epoch]
    plain_ = [ms for epoch in result["plain_ms"][first:] for ms in epoch]
    if not lightning:
        return {"segments": 0}
    ratios = [a / b for a, b in zip(lightning, plain_)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"segments": len(ratios), "lightning_ms": statistics.fmean(lightning),
            "plain_ms": statistics.fmean(plain_), "ratio": sum(lightning) / sum(plain_),
            "ratio_q1": quartiles[0], "ratio_q3": quartiles[2]}  # fmt: skip


# -- the driver ----------------------------------------------------------------------------------------------
def run_process(cmd: list[str], log_path: Path) -> tuple[int, float]:
    """Run a command, logging its output; return its exit code and its own peak resident memory in MiB."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024  # Linux reports KiB


def timed_epochs(result: dict) -> list[float]:
    """A run's epoch times without its first epoch (start-up, first-call allocations), unless it had only one."""
    return result["epoch_seconds"][1:] or result["epoch_seconds"]


def combine(rounds: list[dict], command: str) -> dict:
    """One variant's rounds -> the figures reported: epochs after each round's first, pooled; the worst memory."""
    ok = [r for r in rounds if r["exit_code"] == 0 and "error" not in r]
    combined: dict[str, Any] = {"command": command, "rounds": rounds, "exit_code": max(r["exit_code"] for r in rounds)}
    if not ok:
        return combined
    combined["epoch_seconds"] = [s for r in ok for s in timed_epochs(r)]
    combined["round_medians"] = [statistics.median(timed_epochs(r)) if r in ok else None for r in rounds]
    combined["test_acc"] = statistics.median(r["test_acc"] for r in ok if r.get("test_acc") is not None)
    combined["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    if any("peak_gpu_mb" in r for r in ok):
        combined["peak_gpu_mb"] = max(r.get("peak_gpu_mb", 0) for r in ok)
    tta = [r["seconds_to_target"] for r in ok if "seconds_to_target" in r]
    if tta:
        combined["seconds_to_target"] = statistics.median(tta)
        combined["seconds_to_target_all"] = tta
    combined["tta_curve"] = ok[0].get("tta_curve", [])
    return combined


def lightning_result(run_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
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


def lightning_command(args: argparse.Namespace, run_dir: Path, overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "src.train", f"hydra.run.dir={run_dir}", f"trainer.accelerator={args.accelerator}"]
    if args.tiny:
        cmd += [f"trainer.limit_{s}_batches={args.limit}" for s in ("train", "val", "test")]
    return cmd + overrides


def machine_info(accelerator: str) -> dict[str, str]:
    import lightning

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}",
    }
    if accelerator == "gpu" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_report(out: Path, results: dict[str, dict], info: dict[str, str], args: argparse.Namespace) -> str:
    rows, medians = [], {}
    for name, r in results.items():
        if name == "paired":
            continue
        if "epoch_seconds" not in r:
            rows.append(f"| {name} | failed (exit {r.get('exit_code')}) | | | |")
            continue
        medians[name] = statistics.median(r["epoch_seconds"])
        images = (args.limit * args.batch_size) if args.tiny else TRAIN_IMAGES
        memory = f"{r['peak_rss_mb']:.0f}" + (f" (GPU {r['peak_gpu_mb']:.0f})" if "peak_gpu_mb" in r else "")
        acc = f"{r['test_acc']:.4f}" if r.get("test_acc") is not None else "n/a"
        rows.append(f"| {name} | {medians[name]:.3f} | {images / medians[name]:,.0f} | {acc} | {memory} |")
    lines = [
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
    # raw / textbook is the floor under lightning / textbook: the same ratio with no Lightning at all.
    for name, ref, why in (("lightning", "textbook", ""), ("lightning", "raw", ""),
                           ("raw", "textbook", "; the floor for lightning / textbook")):  # fmt: skip
        if name in medians and ref in medians:
            # Paired by round: both ran minutes apart, so a slow spell of the machine cancels out of the ratio.
            paired = [a / b for a, b in zip(results[name]["round_medians"], results[ref]["round_medians"])
                      if a is not None and b is not None]  # fmt: skip
            lines.append(
                f"- {name} / {ref}: {medians[name] / medians[ref]:.3f} (ratio of the medians above); "
                f"per round {statistics.median(paired):.3f} median, {min(paired):.3f}-{max(paired):.3f} range "
                f"({len(paired)} rounds){why}"
            )
    levels = results.get("paired", {})
    if levels:
        lines += [
            "",
            f"Lightning's cost per training step, paired: in one process, segments of {args.segment} Lightning "
            f"steps alternate with {args.segment} steps of the raw loop (its own network, optimizer and data); "
            "ms per step are means over the segments after the first epoch, the ratio is Lightning's total time "
            "over the raw loop's, with the quartiles of the segments' own ratios. Validation and epoch-end work "
            "(metrics, checkpoints) are not in these figures.",
            "",
            "| Lightning as | Lightning ms/step | raw loop ms/step | paired ratio (quartiles) | segments |",
            "|---|---|---|---|---|",
        ]
        for level, r in levels.items():
            if not r.get("segments"):
                why = f"failed (exit {r['exit_code']})" if r["exit_code"] else f"no complete {args.segment}-step segment"
                lines.append(f"| {level}: {PAIRED_LEVELS[level]} | {why} | | | |")
                continue
            lines.append(
                f"| {level}: {PAIRED_LEVELS[level]} | {r['lightning_ms']:.2f} | {r['plain_ms']:.2f} | "
                f"{r['ratio']:.3f} ({r['ratio_q1']:.3f}-{r['ratio_q3']:.3f}) | {r['segments']} |"
            )
        lines.append("")
    tta = results.get("fast_mnist", {})
    if "seconds_to_target" in tta:
        runs = ", ".join(f"{t:.2f}" for t in tta["seconds_to_target_all"])
        lines.append(
            f"- time to 99.0% MNIST test accuracy (experiment=fast_mnist, checked at each epoch end): "
            f"{tta['seconds_to_target']:.2f} s of training (median of {len(tta['seconds_to_target_all'])} runs: {runs})"
        )
    elif tta:
        best = max((a for _, a in tta.get("tta_curve", [])), default=None)
        lines.append(f"- experiment=fast_mnist did not reach 99.0% test accuracy (best {best})")
    report = "\n".join(lines) + "\n"
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(json.dumps({"info": info, "results": results}, indent=2))
    plot(out / "chart.png", medians, info)
    return report


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions of every variant")
    parser.add_argument("--tta-rounds", type=int, default=2, help="runs of experiment=fast_mnist (time to 99%%)")
    parser.add_argument("--tiny", action="store_true", help="a few batches per variant (CI)")
    parser.add_argument("--limit", type=int, default=5, help="batches per stage in --tiny mode")
    parser.add_argument("--variants", default="textbook,raw,lightning,fast_mnist,paired")
    parser.add_argument("--segment", type=int, default=10, help="steps per segment of the paired measurement")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="another Lightning variant: a name and src.train overrides")  # fmt: skip
    parser.add_argument("--worker", choices=["textbook", "raw", *PAIRED_LEVELS], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: no CUDA GPU is available on this machine")
    if args.tiny:
        args.epochs, args.rounds, args.tta_rounds, args.segment = min(args.epochs, 2), 1, 1, 2

    if args.worker:  # inside a worker process: run one plain loop and write its result
        limit, overrides = args.limit if args.tiny else None, json.loads(args.overrides)
        if args.worker in PAIRED_LEVELS:
            output_dir = args.result.with_suffix("")
            result = run_paired(args.worker, args.accelerator, limit, args.segment, overrides, output_dir)
        else:
            result = run_plain_loop(args.worker, args.epochs, args.accelerator, limit, overrides)
        args.result.write_text(json.dumps(result))
        return 0

    from src.data import MNISTDataModule

    MNISTDataModule(data_dir=data_dir()).prepare_data()  # missing data: one clear error before any variant runs
    out = args.out or PROJECT_ROOT / "outputs" / "bench" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    common = [f"trainer.max_epochs={args.epochs}", f"data.batch_size={args.batch_size}", "scheduler=none",
              "model.activation=relu", "model.pooling=max", "optimizer=sgd", f"optimizer.lr={LR}",
              f"optimizer.momentum={MOMENTUM}", f"seed={SEED}", f"paths.data_dir={data_dir()}"]  # fmt: skip
    def worker(name: str) -> list[str]:
        return [sys.executable, "-m", "src.bench", "--worker", name, "--result", str(out / f"{name}.json"),
                f"--epochs={args.epochs}", f"--accelerator={args.accelerator}", f"--limit={args.limit}",
                f"--segment={args.segment}", *(["--tiny"] if args.tiny else []),
                "--overrides", json.dumps(common)]  # fmt: skip

    jobs: dict[str, list[str]] = {}
    paired_jobs: dict[str, list[str]] = {}
    for name in args.variants.split(","):
        if name in ("textbook", "raw"):
            jobs[name] = worker(name)
        elif name == "paired":  # paired within each run: one run per level is enough
            paired_jobs = {level: worker(level) for level in PAIRED_LEVELS}
        elif name == "lightning":
            jobs[name] = lightning_command(args, out / name, common)
        elif name == "fast_mnist":
            tta = ["experiment=fast_mnist", "+callbacks.time_to_accuracy._target_=src.callbacks.TimeToAccuracy",
                   "+callbacks.time_to_accuracy.target=0.99", f"seed={SEED}"]  # fmt: skip
            jobs[name] = lightning_command(args, out / name, tta + (["trainer.max_epochs=1"] if args.tiny else []))
        else:
            parser.error(f"unknown variant {name!r}; valid: textbook, raw, lightning, fast_mnist, paired")
    for extra in args.extra:
        name, _, overrides = extra.partition("=")
        jobs[name] = lightning_command(args, out / name, common + shlex.split(overrides))

    # Rounds interleave the variants (A B C, A B C, ...) so a slow spell of a shared machine hits them all alike.
    runs: dict[str, list[dict]] = {name: [] for name in jobs}
    for round_ in range(args.rounds):
        for name, cmd in jobs.items():
            if name == "fast_mnist" and round_ >= args.tta_rounds:
                continue
            tag = f"{name}.r{round_}"
            round_cmd = [c.replace(f"/{name}", f"/{tag}") if c.startswith("hydra.run.dir=") else c for c in cmd]
            round_cmd = [c.replace(f"{name}.json", f"{tag}.json") for c in round_cmd]
            print(f"[bench] round {round_ + 1}/{args.rounds} {name}: {shlex.join(round_cmd[1:])}", flush=True)
            code, rss = run_process(round_cmd, out / f"{tag}.log")
            result: dict[str, Any] = {"exit_code": code, "peak_rss_mb": rss}
            if code == 0:
                result.update(json.loads((out / f"{tag}.json").read_text()) if name in ("textbook", "raw")
                              else lightning_result(out / tag))  # fmt: skip
            else:
                print(f"[bench] {name} failed with exit code {code}; see {out / (tag + '.log')}", flush=True)
            runs[name].append(result)
    results: dict[str, Any] = {name: combine(rounds, shlex.join(jobs[name][1:])) for name, rounds in runs.items()}
    if paired_jobs:
        results["paired"] = {}
        for level, cmd in paired_jobs.items():
            print(f"[bench] paired {level}: {shlex.join(cmd[1:])}", flush=True)
            code, _ = run_process(cmd, out / f"{level}.log")
            summary = paired_summary(json.loads((out / f"{level}.json").read_text())) if code == 0 else {}
            results["paired"][level] = {"exit_code": code, "command": shlex.join(cmd[1:]), **summary}
    print(write_report(out, results, machine_info(args.accelerator), args))
    print(f"[bench] written to {out}")
    codes = [r["exit_code"] for name, r in results.items() if name != "paired"]
    codes += [r["exit_code"] or int(not r.get("segments")) for r in results.get("paired", {}).values()]
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
