"""Train LeNet-5: ``python -m src.train [group=option ...] [key=value ...]`` (add ``-m`` for a sweep).

pre-flight (validate the config, pick and check the checkpoint it resumes from) -> seed -> instantiate data, model,
callbacks, loggers, trainer -> fit -> test the best checkpoint -> print and save the final metrics -> return the
optimised metric to the sweeper.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from src.checkpoints import ResumePoint
from src.cluster import slurm_environment
from src.config import CONFIG_DIR
from src.errors import RunFolderInUse, run_entry_point
from src.lit_module import LitLeNet5
from src.runtime import configure_runtime
from src.tuning import find_learning_rate
from src.validation import preflight

log = logging.getLogger(__name__)


def build(cfg: DictConfig, resume: ResumePoint | None = None) -> tuple[L.LightningDataModule, LitLeNet5, L.Trainer]:
    """Instantiate everything a run needs from its composed config; nothing is trained or loaded yet."""
    datamodule = instantiate(cfg.data)
    model = LitLeNet5.from_config(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c, **_logger_options(c, cfg, resume)) for c in (cfg.get("logger") or {}).values()]
    plugins = [instantiate(p) for p in cfg.trainer.get("plugins") or []]
    if (environment := slurm_environment()) is not None:
        plugins.append(environment)  # one requeue, submitit's: see src.cluster.slurm_environment
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None)
    return datamodule, model, trainer


def _logger_options(logger: DictConfig, cfg: DictConfig, resume: ResumePoint | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if "log_graph" in logger and cfg.get("compile"):
        options["log_graph"] = False  # torch.jit.trace (the TensorBoard graph) cannot trace a torch.compile'd module
    if "purge_step" in logger and resume is not None:
        options["purge_step"] = resume.global_step  # what the stopped run wrote past its checkpoint is done again
    return options


def write_summary(cfg: DictConfig, summary: dict[str, Any]) -> None:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))


def train(cfg: DictConfig) -> dict[str, float]:
    resume = preflight(cfg)  # before anything is downloaded, written or trained
    if resume is not None and resume.in_own_folder:
        # Continuing in its own folder (requeued, or resume= with hydra.run.dir= the same folder): the checkpoints
        # there are this run's, not the foreign ones ModelCheckpoint warns about.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    configure_runtime(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build(cfg, resume)
    if cfg.get("lr_find", {}).get("enabled") and resume is None:  # a requeued job keeps the lr its first run found
        find_learning_rate(trainer, model, datamodule, cfg.lr_find, Path(cfg.paths.output_dir))
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
        write_summary(cfg, summary)
        shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in sorted(metrics) if k.split("/")[0] in ("val", "test"))
        log.info("Final metrics: %s", shown)
        log.info("Outputs in %s", cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    def mark_failed(exc: Exception) -> None:
        # The run's folder says it failed (a sweep's report reads it); what was written before stays: a folder that
        # belongs to another run, or a finished run's (e.g. a refused resume=<it> hydra.run.dir=<it>), keeps its record.
        summary = Path(cfg.paths.output_dir, "metrics.json")
        finished = summary.is_file() and json.loads(summary.read_text()).get("status") == "completed"
        if not isinstance(exc, RunFolderInUse) and not finished:
            write_summary(cfg, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})

    metrics = run_entry_point(train, cfg, on_error=mark_failed)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
