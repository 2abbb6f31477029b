"""Train LeNet-5: ``python -m src.train [group=option ...] [key=value ...]`` (add ``-m`` for a sweep).

check the config -> pick and check the checkpoint it resumes from -> CPU settings, seed -> build data, model,
callbacks, loggers, trainer -> (find the lr) -> fit -> test the best checkpoint -> print and record the final metrics
-> return the optimised metric to the sweeper.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from src.core import runs
from src.core.config import CONFIG_DIR
from src.core.entry_point import run_entry_point
from src.core.errors import DiskFull, RunFolderInUse
from src.training.build import build
from src.training.checkpoints import check_room_for_checkpoints
from src.training.cpu import configure_runtime
from src.training.lr_finder import find_learning_rate
from src.training.resume import kept_on_full_disk, resolve_resume
from src.training.rules import check_training_config
from src.training.trackers import tracked_runs

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    check_training_config(cfg)  # before anything is downloaded, written or trained
    resume = resolve_resume(cfg)
    if resume is not None and resume.in_own_folder:
        # Continuing in its own folder (requeued, or resume= with hydra.run.dir= the same folder): the checkpoints
        # there are this run's, not the foreign ones ModelCheckpoint warns about.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    configure_runtime(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build(cfg, resume)
    check_room_for_checkpoints(model, cfg.paths.output_dir)
    if cfg.get("lr_find", {}).get("enabled") and resume is None:  # a requeued job keeps the lr its first run found
        find_learning_rate(trainer, model, datamodule, cfg.lr_find, Path(cfg.paths.output_dir))
    # A full disk (a checkpoint, TensorBoard's events, the record) is told as one message: what was kept, how to go on;
    # the trackers' runs (W&B's) end with this run, as failed if it fails
    with kept_on_full_disk(Path(cfg.paths.output_dir)), tracked_runs(trainer):
        start = time.perf_counter()
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume.path if resume else None, weights_only=True)
        except SIGTERMException:
            sys.exit(143)  # Lightning's SIGTERMException exits 0; a stopped run must not look finished
        fit_seconds = time.perf_counter() - start
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if cfg.get("test"):
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})

        # fit_seconds: the wall time of this process's fit (training, validation, checkpoints), for src.report
        summary = {
            "status": "completed",
            "metrics": metrics,
            "best_checkpoint": best,
            "epochs": trainer.current_epoch,
            "fit_seconds": round(fit_seconds, 2),
        }
        if model.test_confusion_matrix is not None:  # the whole test set's, summed over every DDP process
            summary["test_confusion_matrix"] = model.test_confusion_matrix.tolist()
        if trainer.strategy.root_device.type == "cuda":
            summary["peak_gpu_mb"] = torch.cuda.max_memory_allocated(trainer.strategy.root_device) / 2**20
        if trainer.is_global_zero:
            runs.write_record(cfg.paths.output_dir, summary)
            shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in sorted(metrics) if k.split("/")[0] in ("val", "test"))
            log.info("Final metrics: %s", shown)
            log.info("Outputs in %s", cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    def mark_failed(exc: Exception) -> None:
        # The run's folder says it failed (a sweep's report reads it); what was written before stays: a folder that
        # belongs to another run, or a finished run's (e.g. a refused resume=<it> hydra.run.dir=<it>), keeps its record.
        if isinstance(exc, RunFolderInUse) or runs.is_completed(cfg.paths.output_dir):
            return
        status = "disk full" if isinstance(exc, DiskFull) else "failed"
        try:
            runs.write_record(cfg.paths.output_dir, {"status": status, "error": f"{type(exc).__name__}: {exc}"})
        except OSError:  # the disk is full: the message on the console says it all
            pass

    metrics = run_entry_point(train, cfg, on_error=mark_failed)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
