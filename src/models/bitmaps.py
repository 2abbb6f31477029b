"""The ten digit bitmaps that LeNet-5's output layer compares F6 with (LeCun et al. 1998, section II.B and Fig. 3).

Each class's RBF parameter vector is a stylised 7x12 picture of its digit, with components -1 (white) and +1 (black),
read row by row into 84 numbers. The paper draws them from the ASCII set of Fig. 3, at a size where a pixel-exact
transcription cannot be checked; public transcriptions disagree in places. These were drawn for this project in that
figure's style: the digit ten rows high, the bottom two rows left for the descenders of letters that the paper's full
ASCII set needed. What the layer needs of them holds for any such drawing: fixed, distinct, +-1 codes far apart
(``tests/test_lenet1998.py`` checks that no two lie closer than 8 differing pixels).
"""

from __future__ import annotations

import torch
from torch import Tensor

WIDTH, HEIGHT = 7, 12

DIGITS = (
    """
..###..
.##.##.
##...##
##...##
##...##
##...##
##...##
##...##
.##.##.
..###..
.......
.......""",
    """
...##..
..###..
.####..
...##..
...##..
...##..
...##..
...##..
...##..
.######
.......
.......""",
    """
.#####.
##...##
.....##
.....##
....##.
...##..
..##...
.##....
##.....
#######
.......
.......""",
    """
#######
.....##
....##.
...##..
..####.
.....##
.....##
.....##
##...##
.#####.
.......
.......""",
    """
....##.
...###.
..####.
.##.##.
##..##.
##..##.
#######
....##.
....##.
....##.
.......
.......""",
    """
#######
##.....
##.....
######.
.....##
.....##
.....##
.....##
##...##
.#####.
.......
.......""",
    """
..####.
.##....
##.....
##.....
######.
##...##
##...##
##...##
##...##
.#####.
.......
.......""",
    """
#######
.....##
.....##
....##.
...##..
...##..
..##...
..##...
..##...
..##...
.......
.......""",
    """
.#####.
##...##
##...##
##...##
.#####.
##...##
##...##
##...##
##...##
.#####.
.......
.......""",
    """
.#####.
##...##
##...##
##...##
##...##
.######
.....##
.....##
....##.
.####..
.......
.......""",
)


def digit_bitmaps() -> Tensor:
    """The ten codes, (10, 84): class i's row is its bitmap read row by row, +1 for ink ('#'), -1 for paper."""
    rows = []
    for drawing in DIGITS:
        lines = drawing.strip("\n").splitlines()
        assert len(lines) == HEIGHT and all(len(line) == WIDTH for line in lines), "each bitmap is 7 wide, 12 high"
        rows.append([1.0 if c == "#" else -1.0 for line in lines for c in line])
    return torch.tensor(rows)
