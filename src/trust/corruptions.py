"""The 15 MNIST-C corruptions (Mu & Gilmer 2019), written in PyTorch from the paper's definitions and the severities
its public generator uses, batched on any device and deterministic per seed.

Images are (N, 1, 28, 28) floats on the [0, 1] scale; every corruption returns the same shape and range. Randomness
comes only from the ``torch.Generator`` passed in (each corruption gets its own, seeded from the report's seed and the
corruption's name), so a corruption of the same images with the same seed is the same on every run. Where the paper's
code used ImageMagick (motion blur) or scikit-image (Canny edges, affine warps), these are re-implementations that
follow the same recipe (kernel, thresholds, interpolation), not bit-identical copies.

Where the official MNIST-C files (zenodo record 3239543) sit under the data root as ``mnist_c/<name>/test_images.npy``
and ``test_labels.npy``, ``official_corruption`` reads them instead.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SIDE = 28
CENTER = (SIDE - 1) / 2  # 13.5: the affine corruptions keep the image centre fixed


# -- helpers ---------------------------------------------------------------------------------------------------------
def _uniform(shape: tuple[int, ...], low: float, high: float, g: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(shape, generator=g, device=device) * (high - low) + low


def _signs(n: int, g: torch.Generator, device: torch.device) -> Tensor:
    return torch.randint(0, 2, (n,), generator=g, device=device).float() * 2 - 1


def gaussian_blur(x: Tensor, sigma: float, mode: str = "replicate") -> Tensor:
    """scikit-image's ``gaussian`` on each image: kernel radius ``int(4 * sigma + 0.5)``, edge pixels repeated (or
    zeros outside with ``mode="constant"``). Separable, as sums of shifted copies: a one-channel conv2d is slower."""
    radius = int(4 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).tolist()
    y = F.pad(x, (radius,) * 4, mode=mode) if mode != "constant" else F.pad(x, (radius,) * 4)
    h, w = x.shape[-2:]
    rows = sum(weight * y[..., i : i + h, :] for i, weight in enumerate(k))
    return sum(weight * rows[..., :, i : i + w] for i, weight in enumerate(k))


def affine_warp(x: Tensor, matrix: Tensor, offset: Tensor | None = None) -> Tensor:
    """Each output pixel p (column, row) takes the input at ``matrix @ (p - c) + c + offset`` (c: the centre),
    bilinear, black outside: scikit-image's ``warp`` with an inverse map, order 1, constant 0."""
    n = x.shape[0]
    coords = torch.arange(SIDE, device=x.device, dtype=x.dtype) - CENTER
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    p = torch.stack([cols, rows], dim=-1).view(1, SIDE * SIDE, 2)  # (col, row) relative to the centre
    src = p @ matrix.transpose(1, 2)  # (N, 784, 2)
    if offset is not None:
        src = src + offset.view(n, 1, 2)
    grid = (src / CENTER).view(n, SIDE, SIDE, 2)  # align_corners=True: -1 and 1 are the outer pixels' centres
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _line(c0: Tensor, r0: Tensor, c1: Tensor, r1: Tensor) -> Tensor:
    """MNIST-C's anti-aliased line through (c0, r0) and (c1, r1), one per image: intensity log(1 - d / 2.3) + 1 at
    vertical distance d from the line, kept between columns floor(c0) and ceil(c1). (N,) -> (N, 1, 28, 28)."""
    grid = torch.arange(SIDE, device=c0.device, dtype=torch.float32)
    cc, rr = grid.view(1, 1, SIDE), grid.view(1, SIDE, 1)
    same = c1 == c0
    slope = (r1 - r0) / torch.where(same, torch.ones_like(c1), c1 - c0)
    f = slope.view(-1, 1, 1) * (cc - c0.view(-1, 1, 1)) + r0.view(-1, 1, 1)
    dist = (rr - f).abs().clamp(0, 2.3 - 1e-10)
    line = (torch.log(1 - dist / 2.3) + 1).clamp(0, 1)
    keep = (cc >= torch.floor(c0).view(-1, 1, 1)) & (cc < torch.ceil(c1).view(-1, 1, 1))
    line = line * keep * (~same).view(-1, 1, 1)
    return line.unsqueeze(1)


# -- the corruptions -------------------------------------------------------------------------------------------------
def shot_noise(x: Tensor, g: torch.Generator) -> Tensor:
    """Poisson noise: photon counts at 3 per unit of brightness (severity 5)."""
    return (torch.poisson(x * 3, generator=g) / 3).clamp(0, 1)


def impulse_noise(x: Tensor, g: torch.Generator) -> Tensor:
    """Salt and pepper on 17% of the pixels, half each (severity 4)."""
    hit = torch.rand(x.shape, generator=g, device=x.device) < 0.17
    salt = torch.rand(x.shape, generator=g, device=x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def glass_blur(x: Tensor, g: torch.Generator) -> Tensor:
    """Blur (sigma 0.7), shuffle pixels locally (each pixel swapped with a neighbour up/left by at most 1, with
    probability 1/2, two passes from the bottom-right), blur again (severity 1)."""
    sigma, delta, passes = 0.7, 1, 2
    y = torch.floor(gaussian_blur(x, sigma) * 255) / 255  # the paper's code rounds to uint8 here
    flat = y.view(y.shape[0], -1).clone()
    n = flat.shape[0]
    for _ in range(passes):
        for h in range(SIDE - delta, delta, -1):
            for w in range(SIDE - delta, delta, -1):
                swap = torch.rand(n, generator=g, device=x.device) < 0.5
                dx, dy = torch.randint(-delta, delta, (2, n), generator=g, device=x.device)
                a = torch.full((n,), h * SIDE + w, device=x.device)
                b = (h + dy) * SIDE + (w + dx)
                va, vb = flat.gather(1, a[:, None]), flat.gather(1, b[:, None])
                flat.scatter_(1, a[:, None], torch.where(swap[:, None], vb, va))
                flat.scatter_(1, b[:, None], torch.where(swap[:, None], va, vb))
    return gaussian_blur(flat.view_as(x), sigma).clamp(0, 1)


def motion_blur(x: Tensor, g: torch.Generator) -> Tensor:
    """A one-sided Gaussian-weighted smear (radius 10, sigma 3) at an angle drawn from [-45, 45] degrees per image:
    ImageMagick's motion blur, which the paper used (severity 1)."""
    radius, sigma = 10, 3.0
    angle = _uniform((x.shape[0],), -45, 45, g, x.device) * math.pi / 180
    direction = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    steps = torch.arange(radius + 1, device=x.device, dtype=x.dtype)
    weights = torch.exp(-(steps**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    eye = torch.eye(2, device=x.device).expand(x.shape[0], 2, 2)
    out = torch.zeros_like(x)
    for i, w in zip(steps, weights):
        out += w * affine_warp(x, eye, direction * i)
    return out.clamp(0, 1)


def shear(x: Tensor, g: torch.Generator) -> Tensor:
    """Shear by 0.4 rad, direction drawn per image (severity 2)."""
    s = 0.4 * _signs(x.shape[0], g, x.device)
    matrix = torch.zeros(x.shape[0], 2, 2, device=x.device)
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 1] = 1, -torch.sin(s), torch.cos(s)
    return affine_warp(x, matrix).clamp(0, 1)


def scale(x: Tensor, g: torch.Generator) -> Tensor:
    """Shrink to 0.7 of the size about the centre (severity 3)."""
    matrix = torch.eye(2, device=x.device).expand(x.shape[0], 2, 2) / 0.7
    return affine_warp(x, matrix).clamp(0, 1)


def rotate(x: Tensor, g: torch.Generator) -> Tensor:
    """Rotate by 0.4 rad (23 degrees), direction drawn per image (severity 2)."""
    r = 0.4 * _signs(x.shape[0], g, x.device)
    c, s = torch.cos(r), torch.sin(r)
    matrix = torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1)
    return affine_warp(x, matrix).clamp(0, 1)


def brightness(x: Tensor, g: torch.Generator) -> Tensor:
    """+0.5 on HSV's value channel (severity 5); for a grey image that is +0.5 on every pixel, clipped."""
    return (x + 0.5).clamp(0, 1)


def translate(x: Tensor, g: torch.Generator) -> Tensor:
    """Shift by 3 pixels horizontally and 3 vertically, each direction drawn per image (severity 3)."""
    n = x.shape[0]
    offset = 3 * torch.stack([_signs(n, g, x.device), _signs(n, g, x.device)], dim=1)
    return affine_warp(x, torch.eye(2, device=x.device).expand(n, 2, 2), offset).clamp(0, 1)


def stripe(x: Tensor, g: torch.Generator) -> Tensor:
    """Invert the left and right quarters (columns 0-6 and 21-27)."""
    y = x.clone()
    y[..., :7] = 1 - y[..., :7]
    y[..., 21:] = 1 - y[..., 21:]
    return y


def plasma_fractal(n: int, g: torch.Generator, device: torch.device, size: int = 256, decay: float = 1.4) -> Tensor:
    """Diamond-square height maps in [0, 1], (n, size, size): MNIST-C's fog texture (wrap-around neighbours)."""
    maps = torch.zeros(n, size, size, device=device)
    step, wibble = size, 100.0

    def wibbled(mean: Tensor) -> Tensor:
        return mean / 4 + wibble * _uniform(tuple(mean.shape), -wibble, wibble, g, device)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        square = corners + torch.roll(corners, -1, dims=1)
        square = square + torch.roll(square, -1, dims=2)
        maps[:, half:size:step, half:size:step] = wibbled(square)
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        ltsum = centres + torch.roll(centres, 1, dims=1) + corners + torch.roll(corners, -1, dims=2)
        maps[:, 0:size:step, half:size:step] = wibbled(ltsum)
        ttsum = centres + torch.roll(centres, 1, dims=2) + corners + torch.roll(corners, -1, dims=1)
        maps[:, half:size:step, 0:size:step] = wibbled(ttsum)
        step //= 2
        wibble /= decay
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = (maps - low).amax(dim=(1, 2), keepdim=True)
    return (maps - low) / high


def fog_textures(n: int, g: torch.Generator, device: torch.device) -> Tensor:
    """``n`` 28x28 haze textures, each distributed as MNIST-C's (the top-left corner of a normalised 256x256 plasma
    fractal). A map costs 65,536 random draws, so each yields eight corners: the diamond-square recursion on a torus
    is symmetric under reflection about its (0, 0) grid point and under transposition, so the windows reaching right
    or left, down or up from (0, 0), transposed or not, are each exactly such a corner (neighbours, sharing a row or
    column with one another)."""
    count = math.ceil(n / 8)
    maps = torch.cat([plasma_fractal(min(125, count - i), g, device) for i in range(0, count, 125)])  # 125: ~33 MB
    forward = torch.arange(SIDE, device=device)
    backward = torch.remainder(-forward, maps.shape[-1])  # 0, 255, 254, ...: the window reflected about 0
    corners = []
    for rows in (forward, backward):
        for cols in (forward, backward):
            window = maps[:, rows][:, :, cols]
            corners += [window, window.transpose(1, 2)]
    return torch.stack(corners, dim=1).flatten(0, 1)[:n]


def fog(x: Tensor, g: torch.Generator) -> Tensor:
    """A plasma-fractal haze of strength 3 added, then rescaled so the brightest stroke stays (severity 5)."""
    strength = 3.0
    haze = fog_textures(x.shape[0], g, x.device).unsqueeze(1)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + strength * haze) * peak / (peak + strength)).clamp(0, 1)


def spatter(x: Tensor, g: torch.Generator) -> Tensor:
    """Mud: thresholded smoothed noise (mean 0.65, sd 0.3, blur 1, threshold 0.65), its mask blurred (1.5) and kept
    where above 0.8, painted in grey 63/255 (severity 4)."""
    liquid = torch.randn(x.shape, generator=g, device=x.device) * 0.3 + 0.65
    liquid = gaussian_blur(liquid, 1.0)
    mask = gaussian_blur((liquid > 0.65).to(x.dtype), 1.5)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    return (x * (1 - mask) + 63 / 255 * mask).clamp(0, 1)


def dotted_line(x: Tensor, g: torch.Generator) -> Tensor:
    """A dashed line across the image between two random rows (dashes of 2 pixels)."""
    n = x.shape[0]
    r0, r1 = torch.randint(0, 27, (2, n), generator=g, device=x.device).float()
    line = _line(torch.zeros(n, device=x.device), r0, torch.full((n,), 27.0, device=x.device), r1)
    dashes = (torch.arange(SIDE, device=x.device) // 2) % 2 == 1  # columns 0-1 off, 2-3 on, ...
    return (x + line * dashes).clamp(0, 1)


def zigzag(x: Tensor, g: torch.Generator) -> Tensor:
    """A zigzag (teeth 2 long and 2 high) from column 2 to 25, starting at a random row, tilted up to 5 rows."""
    n, a, b = x.shape[0], 2.0, 2.0
    r0 = torch.randint(0, 27, (n,), generator=g, device=x.device).float()
    r1 = r0 + torch.randint(-5, 5, (n,), generator=g, device=x.device).float()
    theta = torch.atan((r1 - r0) / 23)
    d = 23 / torch.cos(theta)
    # teeth at 2, 6, 10, ...: with d between 23 and 23.6 there are always 6 of them, then the end point
    teeth = int((23 - a) // (2 * a)) + 1
    cs = [torch.zeros(n, device=x.device)] + [torch.full((n,), (2 * i + 1) * a, device=x.device) for i in range(teeth)]
    rs = [torch.zeros(n, device=x.device)] + [torch.full((n,), (-1) ** i * b, device=x.device) for i in range(teeth)]
    last = torch.floor(d / (2 * a)) * 2 * a
    cs.append(d)
    rs.append(rs[-1] / (2 * (d - last)))
    c, r = torch.stack(cs), torch.stack(rs)  # (points, N), then rotated by theta and moved to (2, r0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    c, r = cos * c - sin * r + 2, sin * c + cos * r + r0
    y = x
    for i in range(1, c.shape[0]):
        y = (y + _line(c[i - 1], r[i - 1], c[i], r[i])).clamp(0, 1)
    return y


def canny_edges(x: Tensor, g: torch.Generator) -> Tensor:
    """The Canny edge map in place of the image: smoothing sigma 1, Sobel gradients, non-maximum suppression,
    hysteresis between 0.1 and 0.2 (scikit-image's defaults, which the paper used)."""
    smooth = gaussian_blur(x, 1.0, mode="constant")
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device).view(1, 1, 3, 3)
    gx = F.conv2d(F.pad(smooth, (1,) * 4, mode="replicate"), kx)
    gy = F.conv2d(F.pad(smooth, (1,) * 4, mode="replicate"), kx.transpose(2, 3))
    magnitude = torch.hypot(gx, gy)
    # non-maximum suppression along the gradient direction, quantised to 0, 45, 90, 135 degrees
    angle = torch.remainder(torch.atan2(gy, gx) * 180 / math.pi, 180)
    sector = torch.remainder(torch.round(angle / 45), 4).long()
    padded = F.pad(magnitude, (1,) * 4)
    neighbours = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}  # (row, column) step per sector
    is_max = torch.zeros_like(magnitude, dtype=torch.bool)
    for s, (dr, dc) in neighbours.items():
        ahead = padded[..., 1 + dr : 1 + dr + SIDE, 1 + dc : 1 + dc + SIDE]
        behind = padded[..., 1 - dr : 1 - dr + SIDE, 1 - dc : 1 - dc + SIDE]
        is_max |= (sector == s) & (magnitude >= ahead) & (magnitude >= behind)
    candidate = is_max & (magnitude > 0)
    weak, strong = candidate & (magnitude >= 0.1), candidate & (magnitude >= 0.2)
    edges = strong
    while True:  # hysteresis: weak edges joined (8-connected) to strong ones
        grown = weak & (F.max_pool2d(edges.float(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown | edges, edges):
            break
        edges = grown | edges
    return edges.to(x.dtype)


CORRUPTIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    f.__name__: f
    for f in (
        shot_noise,
        impulse_noise,
        glass_blur,
        motion_blur,
        shear,
        scale,
        rotate,
        brightness,
        translate,
        stripe,
        fog,
        spatter,
        dotted_line,
        zigzag,
        canny_edges,
    )
}
# Pen strokes across a garment read as its pattern, not as noise (Fashion-MNIST-C leaves these two out as well).
NOT_FOR_GARMENTS = ("dotted_line", "zigzag")


def corruptions_for(dataset: str) -> list[str]:
    """The corruptions that make sense for a data set: all 15 for digits, 13 for garments."""
    return [c for c in CORRUPTIONS if dataset == "mnist" or c not in NOT_FOR_GARMENTS]


def corrupt(name: str, images: Tensor, seed: int) -> Tensor:
    """``images`` (N, 1, 28, 28) in [0, 1] with corruption ``name``, the same for the same (name, seed)."""
    g = torch.Generator(device=images.device)
    g.manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    return CORRUPTIONS[name](images, g)


def official_corruption(root: Path, name: str) -> tuple[Tensor, Tensor] | None:
    """The official MNIST-C test images and labels of ``name`` ((N, 1, 28, 28) in [0, 1], (N,)), if placed under
    ``root`` (``<data root>/mnist_c``)."""
    folder = root / name
    if not (folder / "test_images.npy").is_file() or not (folder / "test_labels.npy").is_file():
        return None
    images = torch.from_numpy(np.load(folder / "test_images.npy")).float().div(255)
    images = images.reshape(-1, 1, SIDE, SIDE)
    return images, torch.from_numpy(np.load(folder / "test_labels.npy")).long().flatten()


def unavailable_corruptions(names: list[str] | None, dataset: str, source: str, official_root: Path) -> list[str]:
    """Why some of the corruptions asked for (None: all that suit ``dataset``) cannot be reported: pen strokes on
    garments, or official files asked for that are not under ``official_root``; one line each."""
    problems = []
    unsuitable = [c for c in names or [] if c in CORRUPTIONS and c not in corruptions_for(dataset)]
    if unsuitable:
        problems.append(
            f"corruptions.names: {', '.join(unsuitable)} draw pen strokes, which read as a garment's pattern; "
            f"for {dataset} choose among {', '.join(corruptions_for(dataset))}"
        )
    if source == "official":
        if dataset != "mnist":
            problems.append(f"corruptions.source='official': MNIST-C's files are for mnist, not {dataset}")
        else:
            missing = [c for c in names or CORRUPTIONS if not (official_root / c / "test_images.npy").is_file()]
            if missing:
                problems.append(
                    f"corruptions.source='official' but {official_root} lacks {', '.join(missing)} "
                    f"(<name>/test_images.npy and test_labels.npy from zenodo.org/record/3239543); "
                    "use corruptions.source=auto or generated"
                )
    return problems
