"""How every command runs: Hydra composes its config (conf/<name>.yaml and the command line), then its task runs;
a ``UserError`` (a bad value, file or recipe, a full disk) is shown as its message alone, exit status 2 (a full disk:
74)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from src.core.config import CONFIG_DIR
from src.core.errors import REFUSALS, DiskFull, UserError
from src.core.runs import restore_earlier_record
from src.core.storage import disk_full_cause, disk_full_message

log = logging.getLogger(__name__)


def hydra_entry_point(task: Callable[[DictConfig], Any], config_name: str) -> Callable[[], Any]:
    """``python -m src.<command>``'s ``main``: ``@hydra.main`` on conf/``config_name``.yaml, running ``task``."""

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
    def main(cfg: DictConfig) -> Any:
        return run_entry_point(task, cfg)

    return main


def run_entry_point(
    task: Callable[[DictConfig], Any], cfg: DictConfig, on_error: Callable[[Exception], None] | None = None
) -> Any:
    """Run an entry point's task. A ``UserError`` becomes its message alone and its exit status (2; a full disk 74)
    in a single run; in a sweep it is re-raised, so Hydra records the job as failed and runs the others. Any error
    caused by a full disk becomes ``DiskFull``. ``on_error`` sees the error first."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        try:
            return task(cfg)
        except Exception as exc:
            if isinstance(exc, UserError) or (cause := disk_full_cause(exc)) is None:
                raise
            raise DiskFull(disk_full_message(cause, cfg.paths.output_dir)) from exc
    except Exception as exc:
        if on_error is not None:
            on_error(exc)
        if isinstance(exc, DiskFull):
            logging.raiseExceptions = False  # the run's log file cannot take the message; the console can
        if isinstance(exc, UserError):
            log.error("%s", exc)
            if HydraConfig.get().mode == RunMode.RUN:
                if isinstance(exc, REFUSALS):  # refused before any work: an earlier run's folder keeps its record
                    restore_earlier_record()
                sys.exit(exc.exit_status)
        raise
