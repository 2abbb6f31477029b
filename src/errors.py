"""Errors caused by what the user asked for (a value, a file, a recipe), shown as a message, not a traceback."""


class UserError(Exception):
    """Base class: the entry points print the message alone and exit with status 2 (a sweep marks the job failed)."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work; raised before anything is downloaded, written or trained."""


class DataNotFoundError(UserError, FileNotFoundError):
    """The IDX files are missing and could not be downloaded."""


class DataIntegrityError(UserError, ValueError):
    """An IDX file is truncated, has a wrong header, or its bytes differ from the original's."""


class CheckpointError(UserError, ValueError):
    """A checkpoint path that does not exist, is not a checkpoint, or is not safe to load."""


class TrainingDiverged(UserError, RuntimeError):
    """The training loss became NaN or infinite."""
