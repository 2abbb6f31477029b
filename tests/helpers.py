"""Helpers shared by the tests: run an entry point as a user would, read TensorBoard files back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
DATA_DIR = Path(os.environ["DATA_DIR"])

# A few batches per stage: enough to exercise every hook, cheap enough for CI.
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.progress_bar.refresh_rate=0",
]


def run_module(
    module: str, *overrides: str, cwd: Path = ROOT, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <overrides>`` as a user would, capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_scalars(log_dir: Path):
    """Load a TensorBoard run folder with TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams_data(acc, field: str):
    """A run's HPARAMS record from its events: ``experiment`` (the columns it declares; TensorBoard shows one run's
    declaration for the whole --logdir) or ``session_start_info`` (its own values)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField(field):
            return getattr(data, field)
    raise AssertionError(f"no HPARAMS {field} among the run's summaries {list(content)}")


def sweep_jobs(sweep: Path) -> list[Path]:
    """A sweep's job folders (``<job number>_<overrides>``), in job order."""
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.split("_")[0].isdigit()),
                  key=lambda p: int(p.name.split("_")[0]))  # fmt: skip
