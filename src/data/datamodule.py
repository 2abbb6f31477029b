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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, Subset

from src.core.config import padded_size
from src.core.settings import Rule, check, choice, flag, integer, is_number, positive_integer
from src.data.augment import BatchAugment
from src.data.datasets import DATASETS, ensure_files, raw_folder, verify_raw_files
from src.data.preprocessing import Preprocessing, pad_images

PIPELINES = ("tensor", "classic")
DATA_RULES = [  # the `data` group's values, checked by src.train before any work and by the DataModule itself
    choice("data.dataset", DATASETS),
    choice("data.pipeline", PIPELINES),
    positive_integer("data.batch_size"),
    positive_integer("data.eval_batch_size"),
    integer("data.val_size", 0, 59_999, note="0: no validation split, the validation loop reads the test set"),
    integer("data.pad", 0),
    integer("data.num_workers", 0),
    flag("data.normalize"),
    Rule(
        "data.pixel_range",
        lambda v: v is None or (len(v) == 2 and all(is_number(x) for x in v) and v[0] < v[1]),
        "must be null or [background, ink], two numbers, the smaller first (LeCun et al. 1998: [-0.1, 1.175])",
    ),
]


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

    Resumable mid-epoch: ``batches_done`` tells how many of the epoch's batches the training loop has finished when
    an epoch's iteration starts (0, or where a mid-epoch checkpoint stopped), and iteration starts after them, so a
    resumed run sees exactly the batches, and augmentations, an uninterrupted one would. ``state_dict`` makes
    Lightning treat the loader as resumable and keeps the order's seed, checked on loading.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        preprocessing: Preprocessing,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: BatchAugment | None = None,
        batches_done: Callable[[], int] | None = None,
    ) -> None:
        self.images, self.labels, self.batch_size, self.augment = images, labels, batch_size, augment
        self.preprocessing, self.batches_done = preprocessing, batches_done
        self.sampler = DistributedSampler(
            range(len(labels)), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
        )
        self.batch_sampler = None  # Lightning inspects DataLoader-like attributes; batching is done here

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.sampler.seed, "epoch": self.sampler.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.sampler.seed) != self.sampler.seed:
            raise ValueError(
                f"the checkpoint's training order has data.seed={state['seed']}, this run {self.sampler.seed}"
            )

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # One host-to-device copy of the epoch's order; every batch after that is pure device indexing.
        order = torch.tensor(list(self.sampler), dtype=torch.long).to(self.images.device, non_blocking=True)
        sampler, skip = self.sampler, self.batches_done() if self.batches_done else 0
        for batch, idx in enumerate(order.split(self.batch_size)):
            if batch < skip:  # trained on before a mid-epoch checkpoint
                continue
            images = self.images[idx].float()
            if self.augment is not None:
                # Before normalising: the border an image is shifted away from is black, as MNIST's background.
                images = self.augment(
                    images, BatchAugment.generator(images.device, sampler.seed, sampler.epoch, sampler.rank, batch)
                )
            yield self.preprocessing.normalize_(images), self.labels[idx]


class MNISTDataModule(L.LightningDataModule):
    """MNIST or Fashion-MNIST, padded by ``pad`` pixels on each side (32x32 by default), normalised with the training
    split's own statistics."""

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
        verify: bool = True,
        normalize: bool = True,
        pixel_range: Sequence[float] | None = None,
        augment: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if OmegaConf.is_config(augment):  # saved with the checkpoint, which holds only plain containers
            augment = OmegaConf.to_container(augment, resolve=True)
        pixel_range = [float(v) for v in pixel_range] if pixel_range is not None else None  # plain, as augment
        arguments = dict(dataset=dataset, pipeline=pipeline, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         val_size=val_size, pad=pad, num_workers=num_workers, normalize=normalize,
                         pixel_range=pixel_range)  # fmt: skip
        check({"data": arguments}, DATA_RULES)
        self.save_hyperparameters(logger=False)  # in the checkpoint; the loggers get the recipe (as LitLeNet5)
        self.dataset_cls = DATASETS[dataset]
        self.classes: list[str] = list(self.dataset_cls.classes)
        self.num_classes = len(self.classes)
        self.preprocessing: Preprocessing | None = None  # set up from the training split, or a checkpoint's
        self._splits: dict[str, tuple[Tensor, Tensor]] = {}
        self._classic: dict[str, torch.utils.data.Dataset] = {}
        # The split the test loop reads: src.eval's split=train reads the images the network trained on, in order and
        # undistorted, through the same test step.
        self.tested_split = "test"

    # -- files -----------------------------------------------------------------------------------
    @property
    def raw_folder(self) -> Path:
        return raw_folder(self.hparams.data_dir, self.hparams.dataset)

    def prepare_data(self) -> None:
        ensure_files(self.hparams.data_dir, self.hparams.dataset, self.hparams.download)

    # -- splits ----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None, device: torch.device | str | None = None) -> None:
        """Decode, split and pad once; the split tensors go to ``device`` if given (a plain loop without a
        Trainer), else to the attached Trainer's root device, else stay on the CPU."""
        if self._splits:
            return
        hp = self.hparams
        if hp.verify:
            verify_raw_files(self.raw_folder, hp.dataset)
        train_set = self.dataset_cls(hp.data_dir, train=True, download=False)
        test_set = self.dataset_cls(hp.data_dir, train=False, download=False)
        n = len(train_set.targets)
        # The validation split is fixed by split_seed alone, so runs with different seeds share it.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(hp.split_seed))
        self.val_indices, self.train_indices = order[: hp.val_size], order[hp.val_size :]
        train_images, test_images = pad_images(train_set.data, hp.pad), pad_images(test_set.data, hp.pad)
        if self.preprocessing is None:  # one loaded from a checkpoint (load_state_dict) is kept as it is
            if hp.pixel_range is not None:  # the inputs of a blank and of a fully inked pixel, as LeCun et al. set them
                self.preprocessing = Preprocessing.from_range(hp.pad, *hp.pixel_range)
            else:  # normalize=false: the raw [0, 1] pixels d2l feeds its networks (ToTensor alone)
                stats = pixel_stats(train_images[self.train_indices]) if hp.normalize else (0.0, 1.0)
                self.preprocessing = Preprocessing(hp.pad, *stats)

        if device is None:
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        pick = {"train": self.train_indices, "val": self.val_indices}
        # val_size=0: all 60,000 images train, and the validation loop reads the test set (a curve per epoch, as the
        # paper's Fig. 5; src.train refuses to choose a checkpoint by it)
        validation = (train_images, train_set.targets) if hp.val_size else (test_images, test_set.targets)
        if not hp.val_size:
            del pick["val"]
        for split, (images, labels) in {
            "train": (train_images, train_set.targets),
            "val": validation,
            "test": (test_images, test_set.targets),
        }.items():
            if split in pick:
                images, labels = images[pick[split]], labels[pick[split]]
            self._splits[split] = (images.unsqueeze(1).to(device), labels.to(device))

        if hp.pipeline == "classic":
            augment = BatchAugment.from_config(hp.augment)

            def transform(train: bool) -> Any:
                extra = augment.classic_transforms(padded_size(hp.pad)) if train and augment else []
                return self.preprocessing.torchvision_transforms(extra)

            train_set, eval_set = (
                self.dataset_cls(hp.data_dir, train=True, transform=transform(t)) for t in (True, False)
            )
            test = self.dataset_cls(hp.data_dir, train=False, transform=transform(False))
            self._classic = {
                "train": Subset(train_set, self.train_indices.tolist()),
                "val": Subset(eval_set, self.val_indices.tolist()) if hp.val_size else test,
                "test": test,
                "train, undistorted": Subset(eval_set, self.train_indices.tolist()),
            }

    # -- what a checkpoint must carry to use the model without the training data ------------------------
    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the preprocessing and the class names that predictions need."""
        state = {"dataset": self.hparams.dataset, "classes": list(self.classes), "pad": self.hparams.pad}
        return {**state, **(self.preprocessing.state() if self.preprocessing else {"mean": None, "std": None})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Use a checkpoint's preprocessing; call before ``setup`` so every loader is built with it (a state saved
        before any setup has none: setup then makes it from the training split)."""
        self.preprocessing = Preprocessing.from_state(state) if state.get("mean") is not None else None

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """A split's padded uint8 images (N, 1, H, W) and labels, as ``setup`` placed them."""
        return self._splits[name]

    def split_sizes(self) -> dict[str, int]:
        return {split: len(labels) for split, (_, labels) in self._splits.items()}

    # -- loaders ---------------------------------------------------------------------------------
    def _loader(self, split: str, train: bool = False) -> TensorBatches | DataLoader:
        """``split``'s batches: for training (``train``: shuffled, distorted as configured, ``batch_size`` at a time),
        else in order, as they are, ``eval_batch_size`` at a time."""
        hp = self.hparams
        batch_size = hp.batch_size if train else hp.eval_batch_size
        if hp.pipeline == "classic":
            return DataLoader(
                self._classic["train, undistorted" if split == "train" and not train else split],
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
            self.preprocessing,
            shuffle=train,
            seed=hp.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            augment=BatchAugment.from_config(hp.augment) if train else None,
            # where Lightning's fit loop stands in the epoch: its own count, which a mid-epoch checkpoint restores
            batches_done=(lambda: trainer.fit_loop.epoch_loop.batch_progress.current.ready)
            if train and trainer
            else None,
        )

    def train_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader(self.tested_split)
