"""``python -m src.trust``: which checkpoints (one, a run's, a sweep's), every check of the request before any work,
then each checkpoint's report (src.trust.report) into its run folder's ``trust/``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from src.checks import require
from src.errors import CheckpointError, ConfigError
from src.inference import LoadedCheckpoint, check_same_data, load_checkpoint
from src.trust.corruptions import CORRUPTIONS, corruptions_for
from src.trust.settings import Settings, read_settings

log = logging.getLogger(__name__)
USAGE = "python -m src.trust ckpt_path=outputs/train/runs/<date>/<time>/checkpoints/last.ckpt"
OFFICIAL_FOLDER = "mnist_c"  # under the data root: <name>/test_images.npy and test_labels.npy, as zenodo ships them


@dataclass(frozen=True)
class Target:
    ckpt: Path
    out: Path  # where its report goes


def run_folder(ckpt: Path) -> Path | None:
    """The training run a checkpoint belongs to (``<run>/checkpoints/<name>.ckpt`` with ``<run>/.hydra``), if any."""
    run = ckpt.resolve().parent.parent
    return run if ckpt.resolve().parent.name == "checkpoints" and (run / ".hydra").is_dir() else None


def best_checkpoint(run: Path) -> Path | None:
    """A run's best checkpoint (metrics.json's ``best_checkpoint``; else the best-* file with the highest accuracy in
    its name), else its last.ckpt; None for a folder without checkpoints."""
    try:
        named = json.loads((run / "metrics.json").read_text()).get("best_checkpoint")
    except (OSError, ValueError, AttributeError):
        named = None
    folder = run / "checkpoints"
    if named and (folder / Path(named).name).is_file():
        return folder / Path(named).name
    best = sorted(folder.glob("best-*.ckpt"), key=lambda p: p.stem.rsplit("acc", 1)[-1])
    if best:
        return best[-1]
    return folder / "last.ckpt" if (folder / "last.ckpt").is_file() else None


def report_folder(split: str) -> str:
    """A run's folder for the report on ``split``: trust/ for the test set (what src.report reads), trust_val/ for the
    validation split (choosing a recipe), so that one never overwrites the other."""
    return "trust" if split == "test" else f"trust_{split}"


def find_targets(ckpt_path: str, own_folder: Path, folder: str = "trust") -> list[Target]:
    """A checkpoint file: itself. A folder: the best checkpoint of every training run in or below it. Each report
    goes into its run's ``folder``."""
    path = Path(ckpt_path).expanduser()
    if path.is_file():
        run = run_folder(path)
        return [Target(path, run / folder if run else own_folder)]
    if not path.is_dir():
        raise CheckpointError(f"ckpt_path={ckpt_path!r}: no such file or folder; e.g. {USAGE}")
    runs = sorted(
        {p.parent.parent for p in path.rglob(".hydra/config.yaml")} | ({path} if (path / ".hydra").is_dir() else set())
    )
    targets = [Target(ckpt, run / folder) for run in runs if (ckpt := best_checkpoint(run)) is not None]
    if not targets:
        raise CheckpointError(
            f"ckpt_path={ckpt_path!r}: no training run with checkpoints in or below this folder "
            f"(a run folder holds .hydra/ and checkpoints/); e.g. {USAGE}"
        )
    return targets


def device_for(accelerator: str) -> torch.device:
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"accelerator={accelerator!r}: this machine has no CUDA GPU (torch.cuda.is_available() is False); "
                "use accelerator=auto (the GPU when there is one, else the CPU) or accelerator=cpu"
            )
        return torch.device("cuda")
    return torch.device("cuda" if accelerator == "auto" and torch.cuda.is_available() else "cpu")


def check_corruption_names(s: Settings, dataset: str, official_root: Path) -> None:
    if s.corruptions is not None and dataset != "mnist":
        unsuitable = [c for c in s.corruptions if c not in corruptions_for(dataset)]
        if unsuitable:
            raise ConfigError(
                f"corruptions.names: {', '.join(unsuitable)} draw pen strokes, which read as a garment's pattern; "
                f"for {dataset} choose among {', '.join(corruptions_for(dataset))}"
            )
    if s.source == "official" and "corruptions" in s.checks:
        if dataset != "mnist":
            raise ConfigError(f"corruptions.source='official': MNIST-C's files are for mnist, not {dataset}")
        missing = [c for c in s.corruptions or CORRUPTIONS if not (official_root / c / "test_images.npy").is_file()]
        if missing:
            raise ConfigError(
                f"corruptions.source='official' but {official_root} lacks {', '.join(missing)} "
                f"(<name>/test_images.npy and test_labels.npy from zenodo.org/record/3239543); "
                "use corruptions.source=auto or generated"
            )


def splits(
    loaded: LoadedCheckpoint, data_cfg: DictConfig, device: torch.device, limit: int | None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The checkpoint's validation split (as it was trained with: val_size and split_seed from the checkpoint) and
    the test set (the first ``limit`` images), as unpadded [0, 1] pixels on ``device``."""
    from src.data.datamodule import MNISTDataModule

    trained = loaded.data_hparams
    datamodule = MNISTDataModule(
        dataset=loaded.data.dataset,
        data_dir=str(data_cfg.data_dir),
        val_size=int(trained.get("val_size", data_cfg.val_size)),
        split_seed=int(trained.get("split_seed", data_cfg.split_seed)),
        pad=0,
        download=bool(data_cfg.download),
    )
    datamodule.prepare_data()
    datamodule.load_state_dict(loaded.data.as_dict())
    datamodule.setup(device=device)
    val_x, val_y = datamodule.split("val")
    test_x, test_y = datamodule.split("test")
    test_x, test_y = test_x[:limit], test_y[:limit]
    return (val_x.float() / 255, val_y), (test_x.float() / 255, test_y)


def trust(cfg: DictConfig) -> list[dict[str, Any]]:
    from hydra.core.hydra_config import HydraConfig

    from src.trust.report import format_report, trust_report

    settings = read_settings(cfg)
    ckpt_path = require(cfg, "ckpt_path", USAGE)
    device = device_for(settings.accelerator)
    own = Path(HydraConfig.get().runtime.output_dir)
    targets = find_targets(str(ckpt_path), own, report_folder(settings.split))
    official_root = Path(str(cfg.data.data_dir)) / OFFICIAL_FOLDER
    # Every checkpoint is loaded and checked before the first report starts: a bad one stops the command at once.
    loaded = []
    for target in targets:
        checkpoint = load_checkpoint(target.ckpt)
        check_same_data(checkpoint, cfg.data.dataset, checkpoint.data.classes)
        loaded.append(checkpoint)
    check_corruption_names(settings, cfg.data.dataset, official_root)

    reports = []
    for target, checkpoint in zip(targets, loaded):
        val, test = splits(checkpoint, cfg.data, device, settings.limit)
        if settings.split == "val":  # choosing a recipe: never look at the test set (the temperature is fit on it too)
            test = (val[0][: settings.limit], val[1][: settings.limit])
        out = target.out if len(targets) == 1 or target.out != own else own / target.ckpt.stem
        report = trust_report(checkpoint, val, test, settings, out, official_root)
        print(format_report(report))
        print(f"  wrote trust.json and the pictures to {out}; TensorBoard: tensorboard --logdir {out}")
        reports.append({"out": str(out), **report})
    (own / "trust_reports.json").write_text(
        json.dumps([{"ckpt_path": r["ckpt_path"], "out": r["out"]} for r in reports], indent=2)
    )
    return reports
