import math

import pytest
import torch

from src.core.errors import DataNotFoundError
from src.data import MNISTDataModule, TensorBatches
from src.data.datasets import RAW_FILES
from src.data.preprocessing import Preprocessing

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@pytest.fixture(scope="module", params=["mnist", "fashion_mnist"])
def dm(request, data_dir):
    dm = MNISTDataModule(dataset=request.param, data_dir=str(data_dir), download=False)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_split_sizes_and_shapes(dm):
    assert dm.split_sizes() == {"train": 55_000, "val": 5_000, "test": 10_000}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (256, 1, 32, 32) and x.dtype == torch.float32
    assert y.shape == (256,) and y.dtype == torch.long
    assert len(dm.train_dataloader()) == math.ceil(55_000 / 256)
    assert len(dm.test_dataloader()) == math.ceil(10_000 / dm.hparams.eval_batch_size)


def test_normalised_statistics_and_labels(dm):
    xs, ys = zip(*dm.train_dataloader())
    x, y = torch.cat(xs), torch.cat(ys)
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3
    # one batch, as the model sees it, is close too
    assert abs(xs[0].mean().item()) < 0.1 and abs(xs[0].std().item() - 1) < 0.1
    assert set(y.tolist()) == set(range(10))
    for split in ("val", "test"):
        labels = torch.cat([b[1] for b in getattr(dm, f"{split}_dataloader")()])
        assert set(labels.tolist()) == set(range(10))


def test_class_names(dm):
    assert len(dm.classes) == dm.num_classes == 10
    if dm.hparams.dataset == "fashion_mnist":
        assert dm.classes == FASHION_CLASSES


def test_statistics_match_the_data_sets_readme(dm):
    # On the unpadded 28x28 scale the training split's mean is close to the full training set's
    # (MNIST 0.1307, Fashion-MNIST 0.2860, the published statistics); padding 2 scales it by 784/1024.
    unpadded = {"mnist": 0.1307, "fashion_mnist": 0.2860}[dm.hparams.dataset]
    assert dm.preprocessing.mean == pytest.approx(unpadded * 784 / 1024, abs=2e-3)


def test_validation_split_is_fixed_and_disjoint(data_dir):
    a = MNISTDataModule(data_dir=str(data_dir), seed=1)
    b = MNISTDataModule(data_dir=str(data_dir), seed=2)
    a.setup(), b.setup()
    assert torch.equal(a.val_indices, b.val_indices)  # the run's seed does not move the split
    train, val = set(a.train_indices.tolist()), set(a.val_indices.tolist())
    assert not train & val and len(train | val) == 60_000


def test_tensor_pipeline_matches_torchvision_transforms(data_dir):
    """Same indices -> same images and labels as torchvision's dataset with Pad + ToTensor + Normalize."""
    tensor = MNISTDataModule(data_dir=str(data_dir), pipeline="tensor")
    classic = MNISTDataModule(data_dir=str(data_dir), pipeline="classic")
    tensor.setup(), classic.setup()
    assert tensor.preprocessing == classic.preprocessing
    for split in ("val", "test"):
        x_t, y_t = next(iter(getattr(tensor, f"{split}_dataloader")()))
        x_c, y_c = next(iter(getattr(classic, f"{split}_dataloader")()))
        assert torch.equal(y_t, y_c)
        torch.testing.assert_close(x_t, x_c, atol=1e-5, rtol=0)
    # and for training samples, picked by the same permutation the tensor path uses
    images, labels = tensor.split("train")
    for i in (0, 123, 54_999):
        x_c, y_c = classic._classic["train"][i]
        x_t = (images[i].float() / 255 - tensor.preprocessing.mean) / tensor.preprocessing.std
        assert y_c == labels[i].item()
        torch.testing.assert_close(x_t, x_c, atol=1e-5, rtol=0)


AS_THEY_ARE = Preprocessing(pad=0, mean=0.0, std=1 / 255)  # x * 1 - 0: each sample's id comes out as it went in


def test_every_sample_once_per_epoch_reshuffled_and_seeded(data_dir):
    dm = MNISTDataModule(data_dir=str(data_dir), seed=7)
    dm.setup()
    images, labels = dm.split("train")
    # mark each sample by its position so batches can be traced back to indices
    ids = torch.arange(len(labels))
    loader = TensorBatches(ids.view(-1, 1, 1, 1).to(torch.uint8), ids, 256, AS_THEY_ARE, shuffle=True, seed=7)

    def epoch_order(loader, epoch):
        loader.sampler.set_epoch(epoch)
        return torch.cat([y for _, y in loader])

    e0, e1 = epoch_order(loader, 0), epoch_order(loader, 1)
    assert sorted(e0.tolist()) == list(range(55_000))  # every sample exactly once
    assert not torch.equal(e0, e1)  # reshuffled between epochs
    again = TensorBatches(ids.view(-1, 1, 1, 1).to(torch.uint8), ids, 256, AS_THEY_ARE, shuffle=True, seed=7)
    assert torch.equal(epoch_order(again, 1), e1)  # same seed and epoch -> same order
    other = TensorBatches(ids.view(-1, 1, 1, 1).to(torch.uint8), ids, 256, AS_THEY_ARE, shuffle=True, seed=8)
    assert not torch.equal(epoch_order(other, 1), e1)


def test_setup_places_the_splits_on_a_given_device_without_a_trainer(data_dir):
    # A plain loop (the benchmark's raw variant) has no Trainer to take the device from. PyTorch's "meta" device
    # stands in for a GPU here: tensors with shapes and no data, so where each split and batch lands is checked.
    dm = MNISTDataModule(data_dir=str(data_dir))
    dm.setup(device="meta")
    assert {t.device.type for name in ("train", "val", "test") for t in dm.split(name)} == {"meta"}
    x, y = next(iter(dm.train_dataloader()))
    assert x.device.type == y.device.type == "meta" and x.shape == (dm.hparams.batch_size, 1, 32, 32)


def test_ddp_ranks_draw_disjoint_shards_of_one_permutation():
    ids = torch.arange(1000)
    shards = []
    for rank in range(2):
        loader = TensorBatches(
            ids.view(-1, 1, 1, 1).to(torch.uint8), ids, 64, AS_THEY_ARE, True, seed=3, rank=rank, world_size=2
        )
        loader.sampler.set_epoch(4)
        shards.append(torch.cat([y for _, y in loader]))
    assert len(shards[0]) == len(shards[1]) == 500
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    assert sorted(torch.cat(shards).tolist()) == list(range(1000))
    full = torch.randperm(1000, generator=torch.Generator().manual_seed(3 + 4))  # DistributedSampler's order
    assert torch.equal(shards[0], full[0::2]) and torch.equal(shards[1], full[1::2])


def test_missing_folder_names_it_and_both_fixes(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "download" in message and "DATA_DIR" in message and RAW_FILES[0] in message


@pytest.mark.parametrize("pipeline", ["tensor", "classic"])
def test_normalize_false_serves_raw_pixels_as_d2l_does(pipeline, data_dir):
    """data.normalize=false: d2l's ToTensor() alone, pixels in [0, 1], in both pipelines; the checkpoint's statistics
    (mean 0, std 1) make inference prepare images the same way."""
    dm = MNISTDataModule(data_dir=str(data_dir), dataset="fashion_mnist", normalize=False, pipeline=pipeline)
    dm.setup()
    assert dm.preprocessing == Preprocessing(2, 0.0, 1.0) and dm.state_dict()["mean"] == 0.0
    x, _ = next(iter(dm.test_dataloader()))
    images, _ = dm.split("test")
    torch.testing.assert_close(x, images[: len(x)].float() / 255, atol=1e-6, rtol=0)
    assert x.min() == 0.0 and x.max() == 1.0
