"""Checkpoint files: written whole, read safely, and a trained network rebuilt from one (``load_checkpoint``: what
``src.eval``, ``src.predict``, ``src.export``, ``src.trust``, ``src.visualize`` and the demo load). Checkpoints are
read only with ``weights_only=True``: tensors and plain containers, never code."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor

from src.core.errors import CheckpointError, ConfigError, DiskFull
from src.core.storage import free_bytes, human_bytes
from src.data.datasets import load_test_set
from src.data.preprocessing import Preprocessing
from src.models.networks import build_network

DATA_STATE_KEY = "MNISTDataModule"  # where Lightning saves MNISTDataModule.state_dict() in a checkpoint


def safe_load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only, never arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={str(path)!r}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # garbage bytes, not an object the weights-only unpickler refused
            raise CheckpointError(
                f"ckpt_path={str(path)!r} is not a readable checkpoint (not a file torch.save wrote)"
            ) from None
        raise CheckpointError(
            f"ckpt_path={str(path)!r} was refused: it holds Python objects other than tensors and plain containers, "
            f"and loading those could run code. Only checkpoints written by this project load ({exc.__class__.__name__})."
        ) from None
    except OSError as exc:  # a file that cannot be read (permissions, a failing disk)
        raise CheckpointError(f"ckpt_path={str(path)!r} cannot be read ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # a truncated file, a zip that is not a checkpoint, random bytes, ...
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is not a readable checkpoint (not a whole file torch.save wrote: "
            f"{type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path={str(path)!r} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def check_room_for_checkpoints(model: torch.nn.Module, folder: str | Path) -> None:
    """Refuse, before training, a folder whose disk cannot hold two of this model's checkpoints: each is written
    beside the one it replaces (``AtomicCheckpointIO``). A checkpoint is taken as three times the model's state (its
    weights and up to two optimizer moments per weight, as Adam keeps)."""
    checkpoint = 3 * sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if (free := free_bytes(folder)) < 2 * checkpoint:
        raise DiskFull(
            f"Disk full before training: {folder} has {human_bytes(free)} free, and this model's checkpoints need "
            f"about {human_bytes(2 * checkpoint)} (two of about {human_bytes(checkpoint)}: each is written beside the "
            f"one it replaces). Free some space, or point hydra.run.dir= at another disk. Nothing was trained."
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, fsyncs it and renames it into place.

    A run killed while saving leaves the previous file whole: a rename within one folder is atomic.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote storage: Lightning's own fsspec path
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # make the rename itself durable
        finally:
            os.close(fd)


@dataclass
class LoadedCheckpoint:
    """A trained network, rebuilt from a checkpoint with what it needs to read images: its data set's classes and
    the preprocessing it was trained with."""

    path: Path
    net: torch.nn.Module  # LeNet5 or LeNet1998, in eval mode, on the CPU
    model: dict[str, Any]  # the network's arguments (the run's `model` config)
    dataset: str
    classes: list[str]
    preprocessing: Preprocessing
    epoch: int | None
    data_hparams: dict[str, Any]  # the DataModule's arguments (val_size, split_seed, ...)

    def check_dataset(self, dataset: str) -> None:
        """Refuse to use the network on a data set other than the one it was trained on."""
        if dataset != self.dataset:
            raise ConfigError(
                f"ckpt_path={str(self.path)!r} was trained on {self.dataset} ({len(self.classes)} classes), not on "
                f"{dataset}. Use it with data={self.dataset}, or pass a checkpoint trained on {dataset}."
            )

    def test_split(self, data_dir: str | Path, count: int | None = None) -> tuple[Tensor, Tensor]:
        """The first ``count`` (all: None) test images of its data set as the network reads them, and their labels."""
        images, labels = load_test_set(data_dir, self.dataset)
        return self.preprocessing(images[:count]), labels[:count]


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Rebuild the trained network (``src.models``) and its data's preprocessing from a checkpoint of ``src.train``."""
    checkpoint = safe_load_checkpoint(path)  # weights_only=True; raises CheckpointError with the reason
    where = f"ckpt_path={str(path)!r}"
    hparams = checkpoint.get("hyper_parameters")
    state = checkpoint.get(DATA_STATE_KEY)
    if not isinstance(hparams, dict) or not isinstance(hparams.get("model"), dict):
        raise CheckpointError(f"{where} has no model hyperparameters: it was not written by src.train")
    if not isinstance(state, dict) or not {"dataset", "pad", "mean", "std", "classes"} <= state.keys():
        raise CheckpointError(
            f"{where} has no training-data statistics ({DATA_STATE_KEY}): it was not written by src.train"
        )
    if state["mean"] is None or state["std"] is None:
        raise CheckpointError(f"{where}: its training-data statistics are empty (saved before the data was set up)")
    weights = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    try:
        net = build_network(hparams["model"])  # refuses a _target_ not in src.models.NETWORKS, never importing it
        net.load_state_dict(weights)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{where}: its weights do not fit the model it describes: {exc}") from None
    classes = [str(c) for c in state["classes"]]
    outputs = net.num_classes
    if outputs != len(classes):
        raise CheckpointError(f"{where}: the model has {outputs} outputs but its data set has {len(classes)} classes")
    data_hparams = checkpoint.get("datamodule_hyper_parameters")
    return LoadedCheckpoint(
        path=Path(path),
        net=net.eval(),
        model=dict(hparams["model"]),
        dataset=str(state["dataset"]),
        classes=classes,
        preprocessing=Preprocessing.from_state(state),
        epoch=checkpoint.get("epoch"),
        data_hparams=data_hparams if isinstance(data_hparams, dict) else {},
    )
