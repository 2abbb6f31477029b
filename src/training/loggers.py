"""The run's logger: Lightning's TensorBoard logger, writing the graph once and replacing what a resumed run redoes."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, writing the model graph once per run, and purging a resumed run's stale events.

    Lightning logs the graph at the start of every stage (fit, then test), and TensorBoard then warns "Found more
    than one graph event per run". The graph is traced with torch.jit.trace, which torch 2.14 deprecates with a
    FutureWarning on every call; TensorBoard has no other graph writer, so that one warning is silenced while the
    graph is traced, and nowhere else (src.export's TorchScript export still shows it).

    ``purge_step``: a run resumed at that global step (src.train passes the checkpoint's) marks its event file so that
    TensorBoard drops the events the stopped run wrote at or after that step: the work after the checkpoint, which the
    resumed run does again. Without it a preempted run's curves hold those steps twice.
    """

    def __init__(self, save_dir: str | Path, *args: Any, purge_step: int | None = None, **kwargs: Any) -> None:
        _quiet_event_writer_threads()
        if purge_step is not None:
            kwargs["purge_step"] = purge_step  # passed on to torch's SummaryWriter
        super().__init__(save_dir, *args, **kwargs)

    def log_graph(self, model: L.LightningModule, input_array: torch.Tensor | None = None) -> None:
        if getattr(self, "_graph_logged", False):
            return
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning
            )
            super().log_graph(model, input_array)
        self._graph_logged = True


def _quiet_event_writer_threads() -> None:
    """An error in TensorBoard's event-writing thread (a full disk) is raised again by TensorBoard in the training
    thread, at its next write, where src.train tells it in one message: the thread's own traceback is not printed."""
    previous = threading.excepthook
    if getattr(previous, "quiet_event_writers", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not isinstance(args.thread, _AsyncWriterThread):
            previous(args)

    hook.quiet_event_writers = True  # type: ignore[attr-defined]
    threading.excepthook = hook
