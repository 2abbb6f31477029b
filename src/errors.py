"""Errors caused by what the user asked for (a value, a file, a recipe), shown as a message, not a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)


class UserError(Exception):
    """Base class: the entry points print the message alone and exit with status 2 (a sweep marks the job failed)."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work; raised before anything is downloaded, written or trained."""


class RunFolderInUse(ConfigError):
    """A new run pointed at a folder that holds another run's checkpoints (resuming is only done when asked)."""


class DataNotFoundError(UserError, FileNotFoundError):
    """The IDX files are missing and could not be downloaded."""


class DataIntegrityError(UserError, ValueError):
    """An IDX file is truncated, has a wrong header, or its bytes differ from the original's."""


class CheckpointError(UserError, ValueError):
    """A checkpoint path that does not exist, is not a checkpoint, or is not safe to load."""


class TrainingDiverged(UserError, RuntimeError):
    """The training loss became NaN or infinite."""


def run_entry_point(
    task: Callable[[DictConfig], Any], cfg: DictConfig, on_error: Callable[[Exception], None] | None = None
) -> Any:
    """Run an entry point's task. A ``UserError`` becomes its message alone and exit status 2 in a single run; in a
    sweep it is re-raised, so Hydra records the job as failed and runs the others. ``on_error`` sees any error first."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return task(cfg)
    except Exception as exc:
        if on_error is not None:
            on_error(exc)
        if isinstance(exc, UserError):
            log.error("%s", exc)
            if HydraConfig.get().mode == RunMode.RUN:
                sys.exit(2)
        raise
