"""Your own images as the network reads them: any file (or bytes) -> a grayscale array -> a 28x28 digit laid out as
MNIST's were made -> the network's input. Used by ``src.predict``, ``src.visualize`` (``inputs=``) and the demo.

Images are read with guards: a decompression bomb is refused from its header, before decoding; an unreadable or
empty one is an ``ImageError`` naming the file and the fault.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from src.core.errors import ImageError
from src.data.preprocessing import Preprocessing

# PIL's own default is ~89 MP (a warning) and ~179 MP (an error); a digit needs far less, and decoding
# a huge image costs memory before any check could run, so the limit is checked from the header first.
DEFAULT_MAX_PIXELS = 40_000_000
MIN_CONTRAST = 8.0  # 0..255 steps: an image whose strokes stand out by less (3%) shows nothing
WORKING_SIZE = 1024  # larger images are reduced to this (longest side) first: plenty for a 20-pixel digit


def list_images(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    """Files named in ``inputs``; a folder contributes its image files (by extension), sorted."""
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    known = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    paths: list[Path] = []
    for item in items:
        path = Path(str(item)).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in known)
            if not found:
                raise ImageError(
                    f"{path}: the folder holds no image files ({', '.join(sorted({'.png', '.jpg', '.bmp'}))}, ...)"
                )
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise ImageError(f"{path}: no such file or folder")
    if not paths:
        raise ImageError("no input images given")
    return paths


def read_grayscale(
    source: str | Path | bytes | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> np.ndarray:
    """An image as a grayscale array on the 0..255 scale (any mode, size, orientation or transparency): uint8 for an
    8-bit image, float32 where rescaling, blending or reducing one larger than ``WORKING_SIZE`` made fractions.

    ``source`` is a file's path, the file's bytes or a binary file object; messages name it by ``name``, else by
    the path (or "the image" for bytes and file objects)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        where, opened = name or "the image", io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        source = Path(source)
        where, opened = name or str(source), source
    else:
        where, opened = name or str(getattr(source, "name", "the image")), source
    try:
        # PIL warns past MAX_IMAGE_PIXELS and raises past twice that; both become our error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(opened) as img:  # reads the header only
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"{where}: {width}x{height} pixels is more than the {max_pixels:,} allowed "
                        "(a decompression bomb, or a photo far larger than a digit needs); refused without decoding it"
                    )
                if width == 0 or height == 0:
                    raise ImageError(f"{where}: the image is empty ({width}x{height})")
                img.draft("L", (WORKING_SIZE, WORKING_SIZE))  # JPEG: decode at a reduced scale, much faster
                ImageOps.exif_transpose(img, in_place=True)  # phone photos store their rotation in EXIF
                gray = _to_gray(img)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{where}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{where}: refused as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{where}: not an image (no image format recognises its contents)") from None
    except Exception as exc:  # truncated or corrupt data, broken EXIF, unsupported variants: any decoder failure
        raise ImageError(f"{where}: the image cannot be read ({type(exc).__name__}: {exc})") from None
    if max(gray.shape) > WORKING_SIZE:  # area-average down first: later steps then cost the same for any size
        scale = WORKING_SIZE / max(gray.shape)
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        gray = np.asarray(Image.fromarray(gray.astype(np.float32)).resize(size, Image.Resampling.BOX))
    return gray


def _to_gray(img: Image.Image) -> np.ndarray:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit or float: rescale to 0..255
        arr = np.asarray(img, dtype=np.float32)
        low, span = float(arr.min()), float(arr.max() - arr.min())
        return (arr - low) * (255.0 / span) if span > 0 else np.zeros_like(arr)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if not has_alpha:
        return np.array(img.convert("L"))  # a writable copy, as a float image comes back
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    lum = np.array(rgba.convert("L"))
    opacity = np.asarray(rgba.getchannel("A"))
    if opacity.min() == 255:  # opaque (a canvas's PNG): the blend below would give lum, bit for bit
        return lum
    lum = lum.astype(np.float32)
    alpha = opacity.astype(np.float32) / 255.0
    if alpha.sum() == 0:
        return np.zeros_like(lum)
    # Transparent pixels have no colour of their own: lay the drawing on a background that contrasts with its ink.
    ink = float((lum * alpha).sum() / alpha.sum())
    background = 255.0 if ink < 128 else 0.0
    return lum * alpha + background * (1.0 - alpha)


def to_mnist_format(gray: np.ndarray, box: int = 20, size: int = 28, threshold: float = 0.2) -> np.ndarray:
    """A grayscale picture of one character -> a ``size`` x ``size`` float image (0..255) laid out as MNIST's.

    MNIST's recipe (LeCun et al.): light strokes on black, the character scaled to fit a 20x20 box (aspect ratio
    kept), placed in 28x28 so that its centre of mass is at the centre. Here: the strokes cropped as ``ink_crop``
    finds them, the longer side scaled to ``box``, then centred by mass.
    """
    arr = ink_crop(gray, threshold)
    h, w = arr.shape
    scale = box / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_w, new_h) != (w, h):
        # mode "F": no rounding to uint8 between steps; LANCZOS keeps strokes sharp both up and down.
        arr = np.asarray(Image.fromarray(arr).resize((new_w, new_h), Image.Resampling.LANCZOS))
        arr = np.clip(arr, 0.0, 255.0)
    total = float(arr.sum())
    cy = float((arr.sum(axis=1) * np.arange(new_h)).sum() / total)
    cx = float((arr.sum(axis=0) * np.arange(new_w)).sum() / total)
    # MNIST's centre of mass sits at pixel (14, 14) on average; the whole box stays inside the frame.
    top = int(np.clip(round(size / 2 - cy), 0, size - new_h))
    left = int(np.clip(round(size / 2 - cx), 0, size - new_w))
    out = np.zeros((size, size), dtype=np.float32)
    out[top : top + new_h, left : left + new_w] = arr
    return out


def ink_crop(gray: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """A grayscale picture's strokes, light on dark (float32): inverted when the background (the median of the border
    pixels) is light, the background subtracted, stretched so that the strongest is 255, and cropped to the pixels
    above ``threshold`` of it. An ``ImageError`` when no pixel stands out from the background."""
    arr = np.asarray(gray)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32, copy=False)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    background = float(np.median(border))
    light_paper = background > 127.5  # dark ink on light paper: MNIST is light on dark
    # the strongest stroke: the extreme pixel through the same elementwise steps, so bit for bit the strokes' maximum
    peak = float(_strokes(np.array([arr.min() if light_paper else arr.max()]), background, light_paper)[0])
    if peak < MIN_CONTRAST:
        raise ImageError("the image shows nothing: no pixels differ from its background")
    # The strokes are computed only inside a box sure to hold every inked pixel (those past half the threshold, found
    # on the raw pixels): the same values as over the whole picture, for a fraction of its time and memory.
    low, high = background - threshold / 2 * peak, background + threshold / 2 * peak
    if arr.dtype == np.uint8:  # whole numbers: the same test against a whole bound, a tenth of the time
        low, high = math.ceil(low), math.floor(high)
    top, bottom, left, right = ink_box(arr < low if light_paper else arr > high)
    arr = _strokes(arr[top : bottom + 1, left : right + 1], background, light_paper)
    arr *= 255.0 / peak
    top, bottom, left, right = ink_box(arr > threshold * 255.0)
    return arr[top : bottom + 1, left : right + 1]


def _strokes(pixels: np.ndarray, background: float, light_paper: bool) -> np.ndarray:
    """Each pixel's ink over the background (float32, light on dark, 0 where there is none): elementwise, so a crop's
    values are the whole picture's."""
    pixels = pixels.astype(np.float32)
    if light_paper:
        return np.clip((255.0 - pixels) - (255.0 - background), 0.0, None)
    return np.clip(pixels - background, 0.0, None)


def ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """The first and last row and column holding a True pixel (by rows and columns: a fifth of np.nonzero's time on a
    280x280 canvas)."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def prepare_image(
    source: str | Path | bytes | BinaryIO,
    preprocessing: Preprocessing,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> tuple[Tensor, np.ndarray]:
    """An image (path, bytes or binary file object, as ``read_grayscale`` takes) -> (the network's input 1 x S x S, as
    ``preprocessing`` makes it, and the 28x28 MNIST-format view)."""
    gray = read_grayscale(source, max_pixels, name)
    try:
        digit = to_mnist_format(gray)
    except ImageError as exc:
        where = name or (str(source) if isinstance(source, (str, Path)) else "the image")
        raise ImageError(f"{where}: {exc}") from None
    return preprocessing(torch.from_numpy(digit).unsqueeze(0))[0], digit
