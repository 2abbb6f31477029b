"""Everything a training run needs, instantiated from its composed config: the DataModule, the LightningModule, the
callbacks, the loggers and Lightning's ``Trainer``. Nothing is trained or loaded yet. ``src.train`` and the benchmark
build their runs here."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.training.lit_module import LitLeNet5
from src.training.resume import ResumePoint
from src.training.slurm import slurm_environment


def build(cfg: DictConfig, resume: ResumePoint | None = None) -> tuple[L.LightningDataModule, LitLeNet5, L.Trainer]:
    datamodule = instantiate(cfg.data)
    model = LitLeNet5.from_config(cfg)  # right after the seed: the initial weights are the seed's first draws
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = []
    for logger in (cfg.get("logger") or {}).values():
        options: dict[str, Any] = {}
        if "log_graph" in logger and cfg.get("compile"):
            options["log_graph"] = False  # torch.jit.trace (the TensorBoard graph) cannot trace a compiled module
        if "purge_step" in logger and resume is not None:
            options["purge_step"] = resume.global_step  # what the stopped run wrote past its checkpoint is done again
        if str(logger.get("_target_")).endswith("WandbLogger"):  # W&B's run config: the whole composed recipe
            options["config"] = OmegaConf.to_container(cfg, resolve=True)
        loggers.append(instantiate(logger, _partial_=True)(**options))  # a partial: instantiate's own 'config' argument
    plugins = [instantiate(p) for p in cfg.trainer.get("plugins") or []]
    if (environment := slurm_environment()) is not None:
        plugins.append(environment)  # one requeue, submitit's: see src.training.slurm.slurm_environment
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None)
    return datamodule, model, trainer
