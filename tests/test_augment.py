"""Training-set augmentation on the real images: seeded, per-epoch, labels untouched, the same ranges in both pipelines."""

from __future__ import annotations

import pytest
import torch

from src.data import MNISTDataModule, TensorBatches
from src.data.augment import BatchAugment

SHIFT = {"translate": 2}
AFFINE = {"translate": 2, "degrees": 10.0, "scale": [0.9, 1.1]}
CROP_FLIP = {"translate": 2, "flip": 0.5}


@pytest.fixture(scope="module")
def digits(data_dir) -> MNISTDataModule:
    dm = MNISTDataModule(data_dir=str(data_dir), download=False)
    dm.setup()
    return dm


def loader(dm: MNISTDataModule, augment: dict | None, seed: int = 1, epoch: int = 0) -> TensorBatches:
    images, labels = dm.split("train")
    batches = TensorBatches(
        images[:2048],
        labels[:2048],
        256,
        dm.preprocessing,
        shuffle=True,
        seed=seed,
        augment=BatchAugment.from_config(augment),
    )
    batches.sampler.set_epoch(epoch)
    return batches


def epoch_batches(
    dm: MNISTDataModule, augment: dict | None, seed: int = 1, epoch: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader(dm, augment, seed, epoch))
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.parametrize("augment", [SHIFT, AFFINE, CROP_FLIP], ids=["shift", "affine", "crop_flip"])
def test_seeded_per_epoch_and_labels_untouched(augment: dict, digits: MNISTDataModule):
    x, y = epoch_batches(digits, augment)
    plain_x, plain_y = epoch_batches(digits, None)
    assert x.shape == plain_x.shape and x.dtype == plain_x.dtype
    assert torch.equal(y, plain_y)  # the same images in the same order, labels as they were
    assert not torch.equal(x, plain_x)
    again_x, _ = epoch_batches(digits, augment)
    assert torch.equal(x, again_x)  # the same seed and epoch: the same batches (what a resumed run draws again)
    # Another epoch or seed draws other augmentations of the same images: compare image by image, in one order.
    images = digits.split("train")[0][:256].float()
    augment_fn = BatchAugment.from_config(augment)
    draws = [
        augment_fn(images, BatchAugment.generator(images.device, seed, epoch, 0, 0))
        for seed, epoch in ((1, 0), (1, 1), (2, 0))
    ]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_shift_moves_whole_pixels_within_the_range(digits: MNISTDataModule):
    """MNIST digits sit in the 20x20 centre of the padded 32x32 image: a shift of up to 2 pixels loses no ink, and
    each augmented image is its original rolled by one offset in [-2, 2] x [-2, 2]."""
    images = digits.split("train")[0][:512].float()
    out = BatchAugment(**SHIFT)(images, BatchAugment.generator(images.device, 0, 0, 0, 0))
    assert torch.equal(out.sum((1, 2, 3)), images.sum((1, 2, 3)))
    seen = set()
    for original, shifted in zip(images, out):
        offsets = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(original.roll((dy, dx), (1, 2)), shifted)
        ]
        assert offsets, "an augmented image is not a whole-pixel shift of its original"
        seen.update(offsets)
    assert seen == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_values_stay_in_the_pixel_range(digits: MNISTDataModule):
    images = digits.split("train")[0][:256].float()
    for augment in (AFFINE, CROP_FLIP):
        out = BatchAugment.from_config(augment)(images, BatchAugment.generator(images.device, 0, 0, 0, 0))
        assert out.shape == images.shape and out.device == images.device
        assert out.min() >= 0 and out.max() <= 255 + 1e-3
        # bilinear resampling keeps the ink, up to what a zoom adds or removes (0.9-1.1 in scale: 0.81-1.21 in area)
        ratio = out.sum((1, 2, 3)) / images.sum((1, 2, 3))
        assert ratio.min() > 0.75 and ratio.max() < 1.3


def test_flip_mirrors_about_half_the_images(digits: MNISTDataModule):
    images = digits.split("train")[0][:1000].float()
    out = BatchAugment(flip=0.5)(images, BatchAugment.generator(images.device, 0, 0, 0, 0))
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images)])
    unchanged = torch.tensor([torch.equal(o, i) for o, i in zip(out, images)])
    assert bool((mirrored | unchanged).all())
    assert 400 < int(mirrored.sum()) < 600


def test_none_changes_nothing(digits: MNISTDataModule):
    assert BatchAugment.from_config({"translate": 0, "degrees": 0.0, "scale": [1.0, 1.0], "flip": 0.0}) is None
    x, _ = epoch_batches(digits, {"translate": 0})
    assert torch.equal(x, epoch_batches(digits, None)[0])


def test_only_the_training_split_is_augmented(data_dir):
    dm = MNISTDataModule(data_dir=str(data_dir), augment=AFFINE)
    plain = MNISTDataModule(data_dir=str(data_dir))
    dm.setup(), plain.setup()
    assert dm.train_dataloader().augment is not None
    for split in ("val", "test"):
        a, b = next(iter(getattr(dm, f"{split}_dataloader")())), next(iter(getattr(plain, f"{split}_dataloader")()))
        assert torch.equal(a[0], b[0])


def displacements(transform, trials: int = 400) -> set[tuple[int, int]]:
    """Where one bright pixel at the centre of a 32x32 image lands, over many draws of ``transform``."""
    seen = set()
    for _ in range(trials):
        image = torch.zeros(1, 32, 32)
        image[0, 16, 16] = 1.0
        out = transform(image)
        y, x = divmod(int(out.flatten().argmax()), 32)
        seen.add((y - 16, x - 16))
    return seen


@pytest.mark.parametrize("augment", [SHIFT, CROP_FLIP], ids=["shift", "crop_flip"])
def test_classic_pipeline_draws_from_the_same_ranges(augment: dict):
    """The torchvision twin (transforms v2) moves a pixel over the same offsets as the tensor path."""
    from torchvision.transforms import v2

    batch_augment = BatchAugment.from_config(augment)
    torch.manual_seed(0)
    classic = v2.Compose(batch_augment.classic_transforms(32))
    generator = torch.Generator().manual_seed(0)
    tensor = lambda image: batch_augment(image[None], generator)[0]  # noqa: E731
    tensor_seen, classic_seen = displacements(tensor), displacements(classic)
    assert tensor_seen == classic_seen
    # a mirror about the centre line moves column 16 to 15: both pipelines flip when asked, neither when not
    assert any(dx < -2 for _, dx in tensor_seen) == bool(augment.get("flip"))


def test_classic_affine_has_the_same_ranges():
    from torchvision.transforms import v2

    batch_augment = BatchAugment.from_config(AFFINE)
    (affine,) = batch_augment.classic_transforms(32)
    assert isinstance(affine, v2.RandomAffine)
    assert list(affine.degrees) == [-10.0, 10.0] and tuple(affine.scale) == (0.9, 1.1)
    assert tuple(affine.translate) == (2 / 32, 2 / 32)  # torchvision: up to 2/32 of 32 pixels, rounded to whole ones


def test_classic_pipeline_augments_training_images_only(data_dir):
    dm = MNISTDataModule(data_dir=str(data_dir), pipeline="classic", augment=SHIFT)
    plain = MNISTDataModule(data_dir=str(data_dir), pipeline="classic")
    dm.setup(), plain.setup()
    torch.manual_seed(0)
    draws = [dm._classic["train"][0][0] for _ in range(20)]
    assert any(not torch.equal(d, plain._classic["train"][0][0]) for d in draws)
    assert torch.equal(dm._classic["val"][0][0], plain._classic["val"][0][0])
    assert torch.equal(dm._classic["test"][0][0], plain._classic["test"][0][0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_augmentation_runs_on_the_gpu_where_the_batch_is(data_dir):
    dm = MNISTDataModule(data_dir=str(data_dir), augment=AFFINE)
    dm.setup(device="cuda")
    x, y = next(iter(dm.train_dataloader()))
    assert x.device.type == y.device.type == "cuda"
    images = dm.split("train")[0][:256].float()
    generator = BatchAugment.generator(images.device, 0, 0, 0, 0)
    assert generator.device.type == "cuda" and BatchAugment.from_config(AFFINE)(images, generator).device.type == "cuda"
