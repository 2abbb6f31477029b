"""The pictures every run draws, read back from the rendered figure: what a person sees, not the figure's settings."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.artist import Artist
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.text import Text
from torchvision.datasets import MNIST

from src.core.plots import image_grid, plt


def rendered(fig: Figure) -> tuple[np.ndarray, int]:
    """The figure drawn as a person sees it (RGBA rows from the top), and its height in pixels."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())
    return pixels, pixels.shape[0]


@pytest.fixture(autouse=True)
def screen_resolution():
    """100 dots an inch, matplotlib's default, whatever the machine's settings: the digits' pixels are then drawn
    about 4 screen pixels wide, each a flat square whose middle can be read."""
    with matplotlib.rc_context({"figure.dpi": 100}):
        yield


def texts(fig: Figure) -> dict[str, Text]:
    """Every piece of text the figure draws, by what it says."""
    return {t.get_text(): t for t in fig.findobj(Text) if t.get_text() and t.get_visible()}


def box(artist: Artist, height: int) -> tuple[float, float, float, float]:
    """An artist's box in the rendered picture's pixels: left, top, right, bottom (rows counted from the top)."""
    extent = artist.get_window_extent()
    return extent.x0, height - extent.y1, extent.x1, height - extent.y0


@pytest.mark.parametrize(
    "value_range, columns, channel_axis",
    [(None, 8, False), ((0.0, 255.0), 6, True)],
    ids=["own_range_8_columns", "shared_range_6_columns_NCHW"],
)
def test_the_image_grid_shows_each_image_in_order_under_its_caption(
    data_dir: Path, value_range: tuple[float, float] | None, columns: int, channel_axis: bool
):
    digits = MNIST(str(data_dir), train=False).data[:11].float()  # two rows, the second one part-filled
    digits[3] *= 0.25  # a faint image: in its own range it still reaches white, in a shared one it stays dark
    titles = [f"pred: {(i + 1) % 10}\ntrue: {i}" for i in range(len(digits))]
    colours = ["red" if i % 2 else "black" for i in range(len(digits))]
    suptitle = "Misclassified test images: the 11 with the highest loss, of 1,234"
    given = digits[:, None] if channel_axis else digits
    fig = image_grid(given, titles, columns, title_colors=colours, suptitle=suptitle, value_range=value_range)
    try:
        pixels, height = rendered(fig)
        images = [a for ax in fig.axes for a in ax.get_images()]
        captions = texts(fig)
        assert len(images) == len(digits)
        boxes = [box(image, height) for image in images]
        # in reading order: `columns` to a row, left to right, rows top to bottom, none overlapping, all inside the picture
        tops = sorted({round(b[1]) for b in boxes})
        assert len(tops) == 2
        for i, (left, top, right, bottom) in enumerate(boxes):
            row, column = divmod(i, columns)
            assert round(top) == tops[row], i
            assert abs((right - left) - (bottom - top)) <= 1, i  # square, as the digit is
            if column:
                assert left >= boxes[i - 1][2], i
            assert 0 <= left and right <= pixels.shape[1] and bottom <= height, i
        for i, (digit, (left, top, right, bottom)) in enumerate(zip(digits, boxes)):
            # the centre of each of the digit's 28x28 pixels, drawn in grey: its value in the image's own range
            low, high = value_range or (float(digit.min()), float(digit.max()))
            expected = np.clip((digit.numpy() - low) / (high - low), 0, 1) * 255
            centres_x = (left + (np.arange(28) + 0.5) * (right - left) / 28).astype(int)
            centres_y = (top + (np.arange(28) + 0.5) * (bottom - top) / 28).astype(int)
            grey = pixels[np.ix_(centres_y, centres_x)][..., :3].astype(float)
            assert np.abs(grey - expected[..., None]).max() <= 2, i
            # its caption in its colour, above it, centred on it, apart from the row above's images
            caption = captions[titles[i]]
            c_left, c_top, c_right, c_bottom = box(caption, height)
            assert to_rgba(caption.get_color()) == to_rgba(colours[i]), i
            assert c_bottom <= top and top - c_bottom < 0.2 * (bottom - top), i
            assert abs((c_left + c_right) / 2 - (left + right) / 2) <= 2, i
            if i >= columns:
                assert c_top >= boxes[i - columns][3], i
        # the faint digit reaches white only in its own range
        left, top, right, bottom = (int(v) for v in boxes[3])
        faint = pixels[top + 2 : bottom - 1, left + 2 : right - 1, 0]  # inside its edges (the page around is white)
        assert (faint.max() >= 250) == (value_range is None)
        # neighbouring captions do not run into each other; the title fits the picture, above every caption
        for i in range(len(digits) - 1):
            if divmod(i, columns)[0] == divmod(i + 1, columns)[0]:
                assert box(captions[titles[i]], height)[2] <= box(captions[titles[i + 1]], height)[0], i
        t_left, t_top, t_right, t_bottom = box(captions[suptitle], height)
        assert 0 <= t_left and t_right <= pixels.shape[1]
        assert t_bottom <= min(box(captions[t], height)[1] for t in titles)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("title", ["Misclassified test images: none tested", "W" * 40], ids=["eval", "wide_letters"])
def test_an_empty_image_grid_says_so_under_a_title_that_fits(title: str):
    fig = image_grid(torch.empty(0, 28, 28), [], suptitle=title)
    try:
        pixels, height = rendered(fig)
        shown = texts(fig)
        assert set(shown) == {"(none)", title}
        for text in shown.values():
            left, top, right, bottom = box(text, height)
            assert 0 <= left and right <= pixels.shape[1] and 0 <= top and bottom <= height
    finally:
        plt.close(fig)
