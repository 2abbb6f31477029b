"""The plain PyTorch training loop that the two plain variants (textbook, raw) run, each in a worker process."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from src.bench.textbook import textbook_setup
from src.core.config import compose_config
from src.training.cpu import configure_runtime

PLAIN_VARIANTS = ("textbook", "raw")


def loader_accuracy(net: torch.nn.Module, loader: Any, device: torch.device, limit: int | None) -> float:
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

    net = instantiate(cfg.model).to(device)
    opt = instantiate(cfg.optimizer)(net.parameters())
    dm = instantiate(cfg.data)
    dm.setup(device=device)
    return net, opt, dm


def plain_step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def seconds_since(start: float, device: torch.device) -> float:
    """Seconds since ``start`` (``time.perf_counter``) once the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def run_plain_loop(variant: str, epochs: int, accelerator: str, limit: int | None, overrides: list[str]) -> dict:
    """Train with a plain PyTorch loop. ``raw`` takes model, optimizer and data settings from the composed config,
    exactly as ``src.train`` would, so the only difference left is Lightning; ``textbook`` is the tutorials' code."""
    cfg = compose_config(*overrides)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    if variant == "raw":
        configure_runtime(cfg)  # the process settings src.train makes (threads, CPU memory reuse)
    torch.manual_seed(cfg.seed)
    if variant == "textbook":
        net, opt, (train, val, test) = textbook_setup(cfg, device)
    else:
        net, opt, dm = plain_setup(cfg, device)
        train, val, test = dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()
    epoch_seconds, train_seconds = [], []  # each epoch whole (its validation too), and its training alone
    for epoch in range(epochs):
        if hasattr(train, "sampler") and hasattr(train.sampler, "set_epoch"):
            train.sampler.set_epoch(epoch)
        start = time.perf_counter()
        for i, (x, y) in enumerate(train):
            if limit is not None and i >= limit:
                break
            plain_step(net, opt, x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        train_seconds.append(seconds_since(start, device))
        loader_accuracy(net, val, device, limit)  # validation each epoch, as the Lightning run does
        epoch_seconds.append(seconds_since(start, device))
    result = {
        "epoch_seconds": epoch_seconds,
        "train_seconds": train_seconds,
        "test_acc": loader_accuracy(net, test, device, limit),
    }
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result
