"""The run's loggers: Lightning's TensorBoard logger, writing the graph once, replacing what a resumed run redoes, and
letting training go on when its events can no longer be written; Lightning's MLflow logger, safe for the jobs of a
parallel sweep that share one SQLite store; Lightning's W&B logger. A tracker lost mid-run (MLflow's server, W&B's
service process) stops its record with one warning, not the training."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from tensorboard.summary.writer.event_file_writer import EventFileWriter, _AsyncWriterThread
from torch.utils.tensorboard import SummaryWriter

from src.core.storage import disk_full_cause

log = logging.getLogger(__name__)


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, writing the model graph once per run, and purging a resumed run's stale events.

    Lightning logs the graph at the start of every stage (fit, then test), and TensorBoard then warns "Found more
    than one graph event per run". The graph is traced with torch.jit.trace, which torch 2.14 deprecates with a
    FutureWarning on every call; TensorBoard has no other graph writer, so that one warning is silenced while the
    graph is traced, and nowhere else (src.export's TorchScript export still shows it).

    ``purge_step``: a run resumed at that global step (src.train passes the checkpoint's) marks its event file so that
    TensorBoard drops the events the stopped run wrote at or after that step: the work after the checkpoint, which the
    resumed run does again. Without it a preempted run's curves hold those steps twice.

    Events that can no longer be written (the folder removed, the file replaced) stop TensorBoard's record, not the
    training: one warning, and the checkpoints, history.json and metrics.json go on being written. A full disk is left
    to src.train, which stops the run with its own message (the checkpoints could not be written either).
    """

    def __init__(self, save_dir: str | Path, *args: Any, purge_step: int | None = None, **kwargs: Any) -> None:
        _quiet_event_writer_threads()
        if purge_step is not None:
            kwargs["purge_step"] = purge_step  # passed on to torch's SummaryWriter
        super().__init__(save_dir, *args, **kwargs)

    @property
    @rank_zero_experiment
    def experiment(self) -> SummaryWriter:
        if self._experiment is None:  # Lightning's own construction, with the writer that survives its file
            if self.root_dir:
                self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

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


class _SummaryWriter(SummaryWriter):
    """torch's SummaryWriter whose event file writer stops, with one warning, instead of failing the run."""

    def _get_file_writer(self) -> Any:
        writer = super()._get_file_writer()
        if not isinstance(writer.event_writer, _EventsOrWarning):
            writer.event_writer = _EventsOrWarning(writer.event_writer)
        return writer


class _EventsOrWarning:
    """Wraps TensorBoard's EventFileWriter: the first error writing events (other than a full disk) is a warning and
    every later event is dropped."""

    def __init__(self, writer: EventFileWriter) -> None:
        self._writer, self._failed = writer, False

    def get_logdir(self) -> str:
        return self._writer.get_logdir()

    def add_event(self, event: Any) -> None:
        self._call("add_event", event)

    def flush(self) -> None:
        self._call("flush")

    def close(self) -> None:
        self._call("close")

    def _call(self, method: str, *args: Any) -> None:
        if self._failed:
            return
        try:
            getattr(self._writer, method)(*args)
        except OSError as exc:
            if disk_full_cause(exc) is not None:
                raise
            self._failed = True
            log.warning(
                "TensorBoard's events in %s can no longer be written (%s: %s). Training goes on without them; the "
                "checkpoints, history.json and metrics.json are still written.",
                self._writer.get_logdir(),
                type(exc).__name__,
                exc,
            )


class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLflow logger, whose first contacts with a SQLite store (MLflow's client creating its tables, then
    the sweep's experiment and the run) are made by one process at a time: the jobs of a parallel sweep (joblib, SLURM
    on one node) start together, and two of them creating the same new store or experiment at once fail ("table ...
    already exists").

    A tracker lost mid-run (its server stopped, its database gone) stops MLflow's record, not the training: one
    warning, and every later call to MLflow is skipped; the checkpoints and the other loggers go on. MLflow's own
    retries of a server that does not answer are shortened (a few seconds, once, instead of minutes at every call),
    unless set in the environment (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and the others, MLflow's own variables).
    """

    def __init__(self, *args: Any, tracking_uri: str | None = None, **kwargs: Any) -> None:
        if str(tracking_uri).startswith(("http://", "https://")):
            for name, value in _HTTP_RETRIES.items():
                os.environ.setdefault(name, value)
        with _one_at_a_time(tracking_uri):
            super().__init__(*args, tracking_uri=tracking_uri, **kwargs)
        self._client_or_warning: _TrackerOrWarning | None = None

    def __getstate__(self) -> dict[str, Any]:  # ddp_spawn pickles the loggers: the wrapper is made again after
        return {**super().__getstate__(), "_client_or_warning": None}

    @property
    def experiment(self) -> Any:
        if self._client_or_warning is None:
            from mlflow.exceptions import MlflowException  # the trackers extra: imported only where MLflow is used

            with _one_at_a_time(self._tracking_uri):
                client = super().experiment  # the first time: creates the experiment and the run
            tracker = f"MLflow at {self._tracking_uri}"
            self._client_or_warning = _TrackerOrWarning(client, tracker, (OSError, MlflowException))
        return self._client_or_warning


# MLflow's defaults retry an unanswered request 7 times, backing off up to 2 minutes each time; here about 7 s in
# all, enough for a busy server's 503 to pass
_HTTP_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


class _TrackerOrWarning:
    """Wraps a tracker's client object (MLflow's client, W&B's run): the first of its calls that fails (the server or
    the service process gone, the store unwritable) is a warning, then ``lost()``, and every later call is skipped."""

    def __init__(self, target: Any, tracker: str, errors: tuple[type[Exception], ...], lost: Any = None) -> None:
        self._target, self._tracker, self._errors, self._lost_hook, self._lost = target, tracker, errors, lost, False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "_target" not in self.__dict__:  # copy and pickle probe before __init__ ran
            raise AttributeError(name)
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._lost:
                return None
            try:
                return attribute(*args, **kwargs)
            except self._errors as exc:
                self._lost = True
                log.warning(
                    "%s stopped taking this run's record (%s: %s). Training goes on without it; the checkpoints, "
                    "history.json, metrics.json and the other loggers are still written.",
                    self._tracker,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
                if self._lost_hook is not None:
                    self._lost_hook()
                return None

        return call


class WandbLogger(LightningWandbLogger):
    """Lightning's Weights & Biases logger, whose run, lost mid-way (W&B's service process gone), stops W&B's record,
    not the training: one warning, W&B's service let go (no traceback from its exit hook), later calls skipped."""

    def __getstate__(self) -> dict[str, Any]:  # ddp_spawn pickles the loggers: the wrapper is made again after
        state = super().__getstate__()
        state.pop("_run_or_warning", None)
        return state

    @property
    def experiment(self) -> Any:
        run = super().experiment
        if getattr(self, "_run_or_warning", None) is None:
            import wandb

            lost = (OSError, wandb.Error)
            self._run_or_warning = _TrackerOrWarning(run, f"W&B ({run.dir})", lost, lambda: _let_go_of_wandb(run))
        return self._run_or_warning


def _let_go_of_wandb(run: Any) -> None:
    """Ends this process's connection to W&B's service, so that W&B's exit hook does not try it again, and forgets
    the lost run, so that the next job of a sweep in this process starts its own."""
    import wandb
    from wandb.sdk.lib import module

    try:
        wandb.teardown(exit_code=1)
    except (OSError, wandb.Error, SystemExit):  # W&B exits with its dead service's status: not the training's
        pass
    if wandb.run is run:
        module.unset_globals()


@contextmanager
def _one_at_a_time(tracking_uri: str | None) -> Iterator[None]:
    """An exclusive lock beside a SQLite store (``<database>.lock``); nothing for any other store."""
    if not str(tracking_uri).startswith("sqlite:///"):
        yield
        return
    database = Path(str(tracking_uri).removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield
