"""What a trust report runs on: which checkpoints (one, a run's, a sweep's), where each report goes, and the images
(the checkpoint's own validation split and the test set, as [0, 1] pixels)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from src.core import runs
from src.core.errors import CheckpointError
from src.data.datamodule import MNISTDataModule
from src.training.checkpoints import LoadedCheckpoint

log = logging.getLogger(__name__)

USAGE = "python -m src.trust ckpt_path=outputs/train/runs/<date>/<time>/checkpoints/last.ckpt"


@dataclass(frozen=True)
class Target:
    ckpt: Path
    out: Path  # where its report goes


def report_folder(split: str) -> str:
    """A run's folder for the report on ``split``: trust/ for the test set (what src.report reads), trust_val/ for the
    validation split (choosing a recipe), so that one never overwrites the other."""
    return "trust" if split == "test" else f"trust_{split}"


def find_targets(ckpt_path: str, own_folder: Path, folder: str = "trust") -> list[Target]:
    """A checkpoint file: itself. A folder: the best checkpoint of every training run in or below it. Each report
    goes into its run's ``folder`` (a checkpoint outside a run folder: into ``own_folder``)."""
    path = Path(ckpt_path).expanduser()
    if path.is_file():
        run = runs.run_of(path)
        return [Target(path, run / folder if run else own_folder)]
    if not path.is_dir():
        raise CheckpointError(f"ckpt_path={ckpt_path!r}: no such file or folder; e.g. {USAGE}")
    targets = [Target(ckpt, run / folder) for run in runs.find_runs(path) if (ckpt := runs.best_checkpoint(run))]
    if not targets:
        raise CheckpointError(
            f"ckpt_path={ckpt_path!r}: no training run with checkpoints in or below this folder "
            f"(a run folder holds .hydra/ and checkpoints/); e.g. {USAGE}"
        )
    return targets


def device_for(accelerator: str) -> torch.device:
    """The device ``accelerator`` names (checked before: ``gpu`` and ``cuda`` only where there is one)."""
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if wants_gpu else "cpu")


def splits(
    loaded: LoadedCheckpoint, data_cfg: DictConfig, device: torch.device, limit: int | None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The checkpoint's validation split (as it was trained with: val_size and split_seed from the checkpoint) and
    the test set (the first ``limit`` images), as unpadded [0, 1] pixels on ``device``. A checkpoint trained on all
    60,000 images (``data.val_size=0``, whose validation loop read the test set) gets ``data.val_size`` training
    images instead, never the test set: images it was trained on, which the log says."""
    trained = loaded.data_hparams
    val_size = int(trained.get("val_size", data_cfg.val_size))
    if val_size == 0:
        val_size = int(data_cfg.val_size)
        log.warning(
            "%s trained on every training image (data.val_size=0): its validation split here is %d of those training "
            "images (the temperature is fit on them), never the test set",
            loaded.path,
            val_size,
        )
    datamodule = MNISTDataModule(
        dataset=loaded.dataset,
        data_dir=str(data_cfg.data_dir),
        val_size=val_size,
        split_seed=int(trained.get("split_seed", data_cfg.split_seed)),
        pad=0,
        normalize=False,  # raw pixels: the report's PixelModel applies the checkpoint's own preprocessing
        download=bool(data_cfg.download),
    )
    datamodule.prepare_data()
    datamodule.setup(device=device)
    val_x, val_y = datamodule.split("val")
    test_x, test_y = datamodule.split("test")
    test_x, test_y = test_x[:limit], test_y[:limit]
    return (val_x.float() / 255, val_y), (test_x.float() / 255, test_y)
