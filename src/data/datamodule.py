"""MNIST and Fashion-MNIST as a LightningDataModule.

Two pipelines serve the same samples with the same statistics:
- ``tensor`` (default): each split is decoded once into a uint8 tensor, padded once, kept on the training
  device, and batches are drawn by a seeded permutation and normalised as whole tensors on that device.
  No DataLoader, no PIL, no worker processes: on a small CPU this is most of the speed-up.
- ``classic``: torchvision's dataset with PIL transforms and a DataLoader, as the tutorials write it;
  kept for comparison and for users who want to plug in PIL-based augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torchvision import datasets, transforms

from src.models.lenet5 import check_choice

DATASETS: dict[str, type[datasets.MNIST]] = {
    "mnist": datasets.MNIST,
    "fashion_mnist": datasets.FashionMNIST,
}
PIPELINES = ("tensor", "classic")
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataNotFoundError(FileNotFoundError):
    pass


def raw_folder(data_dir: str | Path, dataset: str) -> Path:
    """Where torchvision keeps a data set's IDX files: ``<data_dir>/<MNIST|FashionMNIST>/raw``."""
    return Path(data_dir) / DATASETS[dataset].__name__ / "raw"


def pixel_stats(images: Tensor) -> tuple[float, float]:
    """Exact mean and std of uint8 pixels on the [0, 1] scale, from a histogram (no float copy of the set)."""
    counts = torch.bincount(images.flatten().cpu(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum()
    mean = (counts * values).sum() / n
    var = (counts * values.square()).sum() / n - mean.square()
    return mean.item(), var.sqrt().item()


class TensorBatches:
    """Normalised ``(images, labels)`` batches drawn from uint8 tensors that stay on one device.

    The order comes from a ``DistributedSampler`` over the indices, so each epoch's permutation depends only
    on (seed, epoch), every sample is seen once per epoch, and under DDP each rank takes a disjoint shard
    of the same permutation. Lightning calls ``sampler.set_epoch`` at each epoch start, resume included.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        mean: float,
        std: float,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        # x_norm = (x_uint8 / 255 - mean) / std, folded into one multiply and one subtract
        self.scale, self.shift = 1.0 / (255.0 * std), mean / std
        self.sampler = DistributedSampler(
            range(len(labels)), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
        )
        self.batch_sampler = None  # Lightning inspects DataLoader-like attributes; batching is done here

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # One host-to-device copy of the epoch's order; every batch after that is pure device indexing.
        order = torch.tensor(list(self.sampler), dtype=torch.long).to(self.images.device, non_blocking=True)
        for idx in order.split(self.batch_size):
            yield self.images[idx].float().mul_(self.scale).sub_(self.shift), self.labels[idx]


class MNISTDataModule(L.LightningDataModule):
    """MNIST or Fashion-MNIST, padded to 32x32, normalised with the training split's own statistics."""

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str = "data",
        batch_size: int = 256,
        eval_batch_size: int = 500,
        val_size: int = 5000,
        pad: int = 2,
        split_seed: int = 0,
        seed: int = 0,
        pipeline: str = "tensor",
        num_workers: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        check_choice("data.dataset", dataset, DATASETS)
        check_choice("data.pipeline", pipeline, PIPELINES)
        self.save_hyperparameters()
        self.dataset_cls = DATASETS[dataset]
        self.classes: list[str] = list(self.dataset_cls.classes)
        self.num_classes = len(self.classes)
        self.mean: float | None = None
        self.std: float | None = None
        self._splits: dict[str, tuple[Tensor, Tensor]] = {}
        self._classic: dict[str, torch.utils.data.Dataset] = {}

    # -- files -----------------------------------------------------------------------------------
    @property
    def raw_folder(self) -> Path:
        return raw_folder(self.hparams.data_dir, self.hparams.dataset)

    def prepare_data(self) -> None:
        missing = [f for f in RAW_FILES if not (self.raw_folder / f).is_file()]
        if not missing:
            return
        error = DataNotFoundError(
            f"{self.hparams.dataset}: {', '.join(missing)} not found in {self.raw_folder}.\n"
            f"Fix it in one of two ways:\n"
            f"  1. download it: run with internet access and data.download=true (torchvision fetches it), or\n"
            f"  2. place the four uncompressed IDX files ({', '.join(RAW_FILES)}) in {self.raw_folder}\n"
            f"     and point the data root at their parent's parent: DATA_DIR=<folder> or paths.data_dir=<folder>."
        )
        if not self.hparams.download:
            raise error
        try:
            for train in (True, False):
                self.dataset_cls(self.hparams.data_dir, train=train, download=True)
        except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError when offline
            raise DataNotFoundError(f"Download failed ({exc}).\n{error}") from exc

    # -- splits ----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        hp = self.hparams
        train_set = self.dataset_cls(hp.data_dir, train=True, download=False)
        test_set = self.dataset_cls(hp.data_dir, train=False, download=False)
        n = len(train_set.targets)
        if not 0 < hp.val_size < n:
            raise ValueError(f"data.val_size={hp.val_size} must be between 1 and {n - 1}")
        # The validation split is fixed by split_seed alone, so runs with different seeds share it.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(hp.split_seed))
        self.val_indices, self.train_indices = order[: hp.val_size], order[hp.val_size :]
        train_images = F.pad(train_set.data, (hp.pad,) * 4)
        test_images = F.pad(test_set.data, (hp.pad,) * 4)
        self.mean, self.std = pixel_stats(train_images[self.train_indices])

        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        pick = {"train": self.train_indices, "val": self.val_indices}
        for split, (images, labels) in {
            "train": (train_images, train_set.targets),
            "val": (train_images, train_set.targets),
            "test": (test_images, test_set.targets),
        }.items():
            if split in pick:
                images, labels = images[pick[split]], labels[pick[split]]
            self._splits[split] = (images.unsqueeze(1).to(device), labels.to(device))

        if hp.pipeline == "classic":
            transform = transforms.Compose(
                [transforms.Pad(hp.pad), transforms.ToTensor(), transforms.Normalize((self.mean,), (self.std,))]
            )
            train_t = self.dataset_cls(hp.data_dir, train=True, transform=transform)
            self._classic = {
                "train": Subset(train_t, self.train_indices.tolist()),
                "val": Subset(train_t, self.val_indices.tolist()),
                "test": self.dataset_cls(hp.data_dir, train=False, transform=transform),
            }

    def split_sizes(self) -> dict[str, int]:
        return {split: len(labels) for split, (_, labels) in self._splits.items()}

    # -- loaders ---------------------------------------------------------------------------------
    def _loader(self, split: str) -> TensorBatches | DataLoader:
        hp = self.hparams
        train = split == "train"
        batch_size = hp.batch_size if train else hp.eval_batch_size
        if hp.pipeline == "classic":
            return DataLoader(
                self._classic[split],
                batch_size=batch_size,
                shuffle=train,
                num_workers=hp.num_workers,
                persistent_workers=hp.num_workers > 0,
                generator=torch.Generator().manual_seed(hp.seed) if train else None,
            )
        images, labels = self._splits[split]
        trainer = self.trainer
        return TensorBatches(
            images,
            labels,
            batch_size,
            self.mean,
            self.std,
            shuffle=train,
            seed=hp.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def train_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("test")
