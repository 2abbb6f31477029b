"""Messages the libraries print on every run that say nothing about the user's run, each silenced by its exact text.

Every filter names one message of one library; any other warning still shows. Noise our own code causes is fixed at
its cause instead (see ``src.training.callbacks.ResumableStopCheckpoint``, ``src.training.loggers.TensorBoardLogger`` and
``enable_model_summary`` in ``conf/trainer/default.yaml``).
"""

from __future__ import annotations

import logging
import warnings

# Lightning 2.6 advertises its cloud logger whenever no LitLogger is configured (logger_connector.py).
LITLOGGER_TIP = "💡 Tip: For seamless cloud logging and experiment tracking"


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def silence_library_noise() -> None:
    """Install the filters (idempotent); called when the ``src`` package is imported, so every entry point has them."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessage) for f in logger.filters):
        logger.addFilter(_DropMessage(LITLOGGER_TIP))
    # torch 2.14 deprecated constructing its pytree LeafSpec, which Lightning 2.6's own _pytree copy still does on
    # every fit; nothing a user can change.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    # Lightning's SLURM detection warns on every run outside `srun` once SLURM's client is installed (a login node, a
    # machine that submits jobs): such a run is local on purpose; inside a job step (SLURM_NTASKS set) it never shows.
    warnings.filterwarnings(
        "ignore",
        message=r"The `srun` command is available on your system but is not used",
        module=r"lightning\.fabric\.plugins\.environments\.slurm",
    )
