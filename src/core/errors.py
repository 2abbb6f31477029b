"""Errors caused by what the user asked for (a value, a file, a recipe): each entry point shows one as its message
alone, not a traceback, and exits 2 (``src.core.entry_point``)."""

from __future__ import annotations


class UserError(Exception):
    """Base class: the entry points print the message alone and exit with ``exit_status`` (2; a sweep marks the job
    failed)."""

    exit_status = 2


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


class ImageError(UserError, ValueError):
    """An input image that does not exist, cannot be read, is too large, or shows nothing."""


class MissingDependencyError(UserError, ImportError):
    """An optional package (onnx, onnxruntime) that a command needs is not installed."""


class ExportCheckError(UserError, RuntimeError):
    """The exported model's outputs differ from PyTorch's beyond the tolerance."""


# What refuses a run before any work: a value, a checkpoint, the data (a full disk or a divergence come later)
REFUSALS = (ConfigError, CheckpointError, DataNotFoundError, DataIntegrityError)


class DiskFull(UserError, OSError):
    """No space left (or the quota reached) where the run writes. Its own exit status, 74 (sysexits' EX_IOERR), tells
    it apart from a refused value (2) and a training failure (1)."""

    exit_status = 74
