"""What the callbacks draw and record, sent to every logger of the run that can take it: TensorBoard, MLflow and
Weights & Biases (conf/logger/). The callbacks call these functions and never a tracker's own API, so this is
the one place that knows each tracker: a picture becomes TensorBoard's image at its step, an MLflow artifact
(``<tag>/step_<step>.png``) and a W&B image under its tag; the recipe's keys become MLflow's params.
"""

from __future__ import annotations

import importlib.util
import socket
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

PACKAGES = {"MLFlowLogger": "mlflow", "WandbLogger": "wandb"}  # each tracker's logger class and the package it needs
PICTURES = (TensorBoardLogger, MLFlowLogger, WandbLogger)  # the loggers that keep pictures (CSV's does not)
HISTOGRAMS = (TensorBoardLogger, WandbLogger)  # and those that draw distributions


def tracker_problems(cfg: DictConfig) -> list[str]:
    """A chosen tracker whose package is missing, or whose tracking server does not answer: refused before any
    training (src.training.rules), with the install command or the address."""
    problems = []
    for name, node in (OmegaConf.select(cfg, "logger") or {}).items():
        target = str(node.get("_target_", ""))
        for cls, package in PACKAGES.items():
            if target.endswith(cls) and importlib.util.find_spec(package) is None:
                problems.append(
                    f"logger={name}: needs the {package} package, which is not installed here; "
                    f'pip install -e ".[trackers]" (or pip install {package})'
                )
        uri = str(node.get("tracking_uri") or "") if target.endswith("MLFlowLogger") else ""
        if uri.startswith(("http://", "https://")) and (reason := _unreachable(uri)):
            problems.append(
                f"logger.{name}.tracking_uri={uri}: cannot be reached ({reason}); start the server there, or leave "
                f"logger.{name}.tracking_uri out for the local SQLite store under outputs/"
            )
    return problems


def _unreachable(uri: str, timeout: float = 5.0) -> str | None:
    parts = urllib.parse.urlsplit(uri)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        return getattr(exc, "strerror", None) or str(exc)
    return None


def keeps_pictures(trainer: L.Trainer) -> bool:
    """Whether a picture drawn now has a logger to go to (else the callbacks need not draw it)."""
    return any(isinstance(logger, PICTURES) for logger in trainer.loggers)


def keeps_histograms(trainer: L.Trainer) -> bool:
    return any(isinstance(logger, HISTOGRAMS) for logger in trainer.loggers)


def log_figure(trainer: L.Trainer, tag: str, figure: Figure, step: int) -> None:
    """A matplotlib figure, drawn once, to each logger; closed afterwards."""
    import matplotlib.pyplot as plt

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, global_step=step, close=False)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_figure(logger.run_id, figure, _artifact(tag, step))
        elif isinstance(logger, WandbLogger):
            logger.log_image(tag, [_rgb(figure)], step=step)
    plt.close(figure)


def log_image(trainer: L.Trainer, tag: str, image: np.ndarray, step: int) -> None:
    """An RGB image (height x width x 3, floats in [0, 1]) to each logger."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_image(logger.run_id, _uint8(image), _artifact(tag, step))
        elif isinstance(logger, WandbLogger):
            logger.log_image(tag, [_uint8(image)], step=step)


def log_scalars(trainer: L.Trainer, values: dict[str, float], step: int) -> None:
    """Values outside Lightning's ``self.log`` (a callback's, at a step of its choosing), to each logger, in one call
    per logger (one request to an MLflow server)."""
    if values:
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)


def log_histograms(trainer: L.Trainer, values: dict[str, Tensor], step: int) -> None:
    """Tensors' distributions to the loggers that draw them: TensorBoard's histograms, W&B's in one record (MLflow has
    none)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            for tag, tensor in values.items():
                logger.experiment.add_histogram(tag, tensor, global_step=step)
        elif isinstance(logger, WandbLogger) and values:
            import wandb

            histograms = {tag: wandb.Histogram(tensor.numpy()) for tag, tensor in values.items()}
            logger.experiment.log({**histograms, "trainer/global_step": step})


def log_recipe(trainer: L.Trainer, params: dict[str, Any]) -> None:
    """The recipe's keys as a user types them (``optimizer.lr``), to the trackers that keep parameters: MLflow's params.
    (TensorBoard's HPARAMS tab has its own protos, src.training.callbacks.HParamsSession; W&B gets the whole composed
    config at the start, src.training.build.)"""
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            logger.log_hyperparams({k: v for k, v in params.items() if v is not None})


@contextmanager
def tracked_runs(trainer: L.Trainer) -> Iterator[None]:
    """Ends each tracker's run when the training run ends, as failed if it raised: W&B keeps one run per process until
    it is finished, so the next job of a sweep run in the same process would log into this one."""
    failed = True
    try:
        yield
        failed = False
    finally:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
                logger.experiment.finish(exit_code=1 if failed else 0)


def _artifact(tag: str, step: int) -> str:
    return f"{tag}/step_{step:06d}.png"


def _uint8(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _rgb(figure: Figure) -> np.ndarray:
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
