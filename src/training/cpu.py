"""Process-wide settings a training run makes before it allocates anything: torch threads and the CPU allocator."""

from __future__ import annotations

import ctypes
import logging
import platform

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# glibc mallopt(3) parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # the largest value glibc accepts on 64-bit systems
_TRIM_THRESHOLD = 2**30


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks (up to 32 MiB each, 1 GiB in all) for reuse; True if it applied.

    PyTorch's CPU allocator asks malloc for every activation and gradient anew on each step. glibc serves blocks
    above its mmap threshold with fresh pages from the kernel and hands them back on free, so each step
    page-faults and zeroes its activations again (what that costs a training step: docs/speed.md). PyTorch's CPU
    performance guide reaches the same end by preloading jemalloc or tcmalloc; mallopt needs no extra library.
    Other C libraries (macOS, Windows, musl) are left as they are.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success; setting the mmap threshold also stops glibc from moving it (and the trim
    # threshold) by itself.
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def configure_runtime(cfg: DictConfig) -> None:
    """Apply ``torch_threads`` and ``reuse_cpu_memory`` from a run's config (``src.train`` and the benchmark)."""
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    if cfg.get("reuse_cpu_memory") and not reuse_freed_memory():
        log.info("reuse_cpu_memory=true has no effect here: it needs Linux with glibc")
