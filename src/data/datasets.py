"""What the two data sets are: their files (layout, checksums, where they come from), their classes and the names
people call them by."""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor
from torchvision import datasets

from src.core.errors import ConfigError, DataIntegrityError, DataNotFoundError
from src.core.settings import is_int

DATASETS: dict[str, type[datasets.MNIST]] = {
    "mnist": datasets.MNIST,
    "fashion_mnist": datasets.FashionMNIST,
}
# Each raw IDX file: (magic number, item count). 2051 = unsigned bytes, 3 dims (images); 2049 = 1 dim (labels).
IDX_LAYOUT = {
    "train-images-idx3-ubyte": (2051, 60_000),
    "train-labels-idx1-ubyte": (2049, 60_000),
    "t10k-images-idx3-ubyte": (2051, 10_000),
    "t10k-labels-idx1-ubyte": (2049, 10_000),
}
RAW_FILES = tuple(IDX_LAYOUT)
# sha256 of the original, uncompressed files (the ones torchvision downloads and gunzips).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}


def raw_folder(data_dir: str | Path, dataset: str) -> Path:
    """Where torchvision keeps a data set's IDX files: ``<data_dir>/<MNIST|FashionMNIST>/raw``."""
    return Path(data_dir) / DATASETS[dataset].__name__ / "raw"


def ensure_files(data_dir: str | Path, dataset: str, download: bool = True) -> None:
    """The data set's four IDX files in place: downloaded by torchvision when missing (and ``download``), else a
    ``DataNotFoundError`` naming the folder and both ways to fix it."""
    folder = raw_folder(data_dir, dataset)
    missing = [f for f in RAW_FILES if not (folder / f).is_file()]
    if not missing:
        return
    error = DataNotFoundError(
        f"{dataset}: {', '.join(missing)} not found in {folder}.\n"
        f"Fix it in one of two ways:\n"
        f"  1. download it: run with internet access and data.download=true (torchvision fetches it), or\n"
        f"  2. place the four uncompressed IDX files ({', '.join(RAW_FILES)}) in {folder}\n"
        f"     and point the data root at their parent's parent: DATA_DIR=<folder> or paths.data_dir=<folder>."
    )
    if not download:
        raise error
    try:
        for train in (True, False):
            DATASETS[dataset](str(data_dir), train=train, download=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError when offline
        raise DataNotFoundError(f"Download failed ({exc}).\n{error}") from exc


def load_test_set(data_dir: str | Path, dataset: str, download: bool = True) -> tuple[Tensor, Tensor]:
    """The data set's 10,000 test images (uint8, N x 28 x 28) and labels, read from its files."""
    ensure_files(data_dir, dataset, download)
    test_set = DATASETS[dataset](str(data_dir), train=False, download=False)
    return test_set.data, test_set.targets


def verify_raw_files(folder: Path, dataset: str) -> None:
    """Check each IDX file's header, size and sha256 against the original; raise naming the file and the fault.

    torchvision checks an md5 only when it downloads, and reads a same-size corrupted file as silent garbage.
    """
    for name, (magic, count) in IDX_LAYOUT.items():
        path = folder / name
        is_images = magic == 2051
        header_size = 16 if is_images else 8
        expected_size = header_size + count * (28 * 28 if is_images else 1)
        with open(path, "rb") as f:
            header = f.read(header_size)
        size = path.stat().st_size
        if len(header) < header_size:
            raise DataIntegrityError(f"{path}: truncated: {size} bytes, expected {expected_size}")
        found_magic, found_count = struct.unpack(">II", header[:8])
        kind = "images" if is_images else "labels"
        if found_magic != magic:
            raise DataIntegrityError(f"{path}: wrong header: magic number {found_magic}, expected {magic} (IDX {kind})")
        if found_count != count:
            raise DataIntegrityError(f"{path}: wrong header: {found_count} {kind}, expected {count}")
        if is_images and struct.unpack(">II", header[8:16]) != (28, 28):
            raise DataIntegrityError(
                f"{path}: wrong header: images of {struct.unpack('>II', header[8:16])}, expected (28, 28)"
            )
        if size != expected_size:
            fault = "truncated" if size < expected_size else "too long"
            raise DataIntegrityError(f"{path}: {fault}: {size} bytes, expected {expected_size}")
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != SHA256[dataset][name]:
            raise DataIntegrityError(
                f"{path}: changed bytes: sha256 {digest} differs from the original's {SHA256[dataset][name]}. "
                "Replace the file with the original (delete it and let torchvision download it again), "
                "or set data.verify=false to use a modified copy on purpose."
            )


# The names people write for a class (d2l's "sweaters and coats"), lower case, beside each data set's own names.
CLASS_ALIASES = {
    "fashion_mnist": {
        "t-shirt": "T-shirt/top",
        "tshirt": "T-shirt/top",
        "t shirt": "T-shirt/top",
        "tee": "T-shirt/top",
        "top": "T-shirt/top",
        "trousers": "Trouser",
        "pants": "Trouser",
        "sweater": "Pullover",
        "jumper": "Pullover",
        "jacket": "Coat",
        "sneakers": "Sneaker",
        "trainer": "Sneaker",
        "boot": "Ankle boot",
        "boots": "Ankle boot",
        "handbag": "Bag",
    },
}


def class_indices(requested: Sequence[str | int], classes: Sequence[str], dataset: str) -> list[int]:
    """The class indices named in ``requested`` (all classes if empty), in the order given, each once.

    A name matches case-insensitively: as a whole, by one of its parts (MNIST's ``3 - three``: ``3``, ``three``;
    ``T-shirt/top``: ``T-shirt``, ``top``), by a common alias (``sweater`` for Pullover, ``tshirt``), or as a plural
    (``coats``); an integer is an index. Anything else is a ``ConfigError`` listing the valid names.
    """
    if not requested:
        return list(range(len(classes)))
    names: dict[str, int] = {}
    for index, name in enumerate(classes):
        for alias in [name, *re.split(r" - |/", name)]:
            names.setdefault(alias.strip().lower(), index)
    for alias, name in CLASS_ALIASES.get(dataset, {}).items():
        if name in classes:
            names.setdefault(alias, classes.index(name))

    def lookup(item: str | int) -> int | None:
        if is_int(item):
            return item if 0 <= item < len(classes) else None
        text = str(item).strip().lower()
        return names.get(text, names.get(text.removesuffix("s")) if text.endswith("s") else None)

    found, unknown = [], []
    for item in requested:
        index = lookup(item)
        if index is None:
            unknown.append(item)
        elif index not in found:
            found.append(index)
    if unknown:
        raise ConfigError(
            f"classes={list(requested)!r}: {', '.join(repr(u) for u in unknown)} "
            f"{'is not a class' if len(unknown) == 1 else 'are not classes'} of {dataset}; "
            f"valid: {', '.join(classes)} (or their indices 0..{len(classes) - 1})"
        )
    return found


def first_of_each_class(labels: Tensor, class_indices: Sequence[int], per_class: int) -> list[int]:
    """Indices of the first ``per_class`` images of each class, class by class in the order given."""
    return [int(i) for c in class_indices for i in (labels == c).nonzero().flatten()[:per_class]]
