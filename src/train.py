"""Train LeNet-5: ``python -m src.train [group=option ...] [key=value ...]`` (add ``-m`` for a sweep).

validate the config -> seed -> instantiate data, model, callbacks, loggers, trainer -> fit -> test the best
checkpoint -> print and save the final metrics -> return the optimised metric to the sweeper.
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
from omegaconf import DictConfig, OmegaConf, open_dict

from src.config import CONFIG_DIR, network_args, resolve_resume, validate
from src.errors import RunFolderInUse, run_entry_point
from src.lit_module import LitLeNet5
from src.reliability import safe_load_checkpoint, slurm_environment
from src.runtime import configure_runtime

log = logging.getLogger(__name__)


def plain(node: Any) -> Any:
    """A resolved config node as plain Python containers (checkpoints must not hold OmegaConf objects)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_model(cfg: DictConfig) -> LitLeNet5:
    """The LightningModule for a composed config (model, optimizer, scheduler, label smoothing), built for the images
    the data group serves: 28x28 digits padded by ``data.pad`` on each side."""
    return LitLeNet5(
        model=network_args(plain(cfg.model), plain(cfg.data)),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler),
        label_smoothing=cfg.get("label_smoothing", 0.0),
    )


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, LitLeNet5, L.Trainer]:
    """Instantiate everything a run needs from its composed config; nothing is trained or loaded yet."""
    datamodule = instantiate(cfg.data)
    model = build_model(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    # torch.jit.trace (the TensorBoard graph) cannot trace a torch.compile'd module: no graph then.
    no_graph = {"log_graph": False} if cfg.model.get("compile") else {}
    loggers = [instantiate(c, **(no_graph if "log_graph" in c else {})) for c in (cfg.get("logger") or {}).values()]
    plugins = [instantiate(p) for p in cfg.trainer.get("plugins") or []]
    if (environment := slurm_environment()) is not None:
        plugins.append(environment)  # one requeue, submitit's: see src.reliability.slurm_environment
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None)
    return datamodule, model, trainer


def write_summary(cfg: DictConfig, summary: dict[str, Any]) -> None:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))


def train(cfg: DictConfig) -> dict[str, float]:
    with open_dict(cfg):
        cfg.ckpt_path = resolve_resume(cfg)
    validate(cfg)  # before anything is downloaded, written or trained
    if cfg.ckpt_path:
        safe_load_checkpoint(cfg.ckpt_path)  # refuse an unsafe or broken file before any work
        if Path(cfg.ckpt_path).resolve().parent == Path(cfg.paths.output_dir, "checkpoints").resolve():
            # Continuing in its own folder (requeued, or resume= with hydra.run.dir= the same folder): the checkpoints
            # there are this run's, not the foreign ones ModelCheckpoint warns about.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    configure_runtime(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build(cfg)
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
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
