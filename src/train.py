"""Train LeNet-5: ``python -m src.train [group=option ...] [key=value ...]`` (add ``-m`` for a sweep).

compose (Hydra) -> seed -> instantiate data, model, callbacks, loggers, trainer -> fit -> test the best
checkpoint -> print and save the final metrics -> return the optimised metric to the sweeper.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config import CONFIG_DIR
from src.lit_module import LitLeNet5

log = logging.getLogger(__name__)


def plain(node: Any) -> Any:
    """A resolved config node as plain Python containers (checkpoints must not hold OmegaConf objects)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, LitLeNet5, L.Trainer]:
    """Instantiate everything a run needs from its composed config; nothing is trained or loaded yet."""
    datamodule = instantiate(cfg.data)
    model = LitLeNet5(model=plain(cfg.model), optimizer=plain(cfg.optimizer), scheduler=plain(cfg.scheduler))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, model, trainer


def train(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})

    summary = {"metrics": metrics, "best_checkpoint": best, "epochs": trainer.current_epoch}
    if trainer.strategy.root_device.type == "cuda":
        summary["peak_gpu_mb"] = torch.cuda.max_memory_allocated(trainer.strategy.root_device) / 2**20
    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
        shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in sorted(metrics) if k.split("/")[0] in ("val", "test"))
        log.info("Final metrics: %s", shown)
        log.info("Outputs in %s", out)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
