"""What only LeCun et al.'s (1998) LeNet-5 (``src.models.LeNet1998``) has to show: which S2 maps feed each C3 map
(Table I, read from the trained C3's own ``connections``) and the trainable coefficient and bias of each map of the
sub-sampling layers S2 and S4. A network without them (LeNet5, or LeNet1998's ablations ``model.c3=full`` and
``model.subsampling=average``) gets neither picture."""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from src.core.plots import plt
from src.models.lenet1998 import SparseConv, Subsampling

TABLE_I_TITLE = "Table I of LeCun et al. (1998)"


def sparse_convs(net: nn.Module) -> list[tuple[str, SparseConv]]:
    """The layers of ``net.features`` whose maps see only some input maps (LeNet1998's C3), with their names."""
    return [(name, m) for name, m in net.features.named_children() if isinstance(m, SparseConv)]


def subsampling_layers(net: nn.Module) -> list[tuple[str, Subsampling]]:
    """The trainable sub-sampling layers of ``net.features`` (LeNet1998's S2 and S4), with their names."""
    return [(name, m) for name, m in net.features.named_children() if isinstance(m, Subsampling)]


def connection_cells(conv: SparseConv) -> Tensor:
    """(in, out) bool: True where input map ``i`` feeds output map ``o``, as the module's ``connections`` say (Table I
    for C3: rows are S2's maps, columns C3's)."""
    cells = torch.zeros(conv.in_channels, conv.out_channels, dtype=torch.bool)
    for out, inputs in enumerate(conv.connections):
        cells[list(inputs), out] = True
    return cells


def connected(conv: nn.Module) -> Tensor | None:
    """(out, in), as ``filter_grid`` takes it: which input maps each filter sees, for a layer whose filters see only
    some (LeNet1998's C3); None for a full conv layer."""
    return connection_cells(conv).T if isinstance(conv, SparseConv) else None


def table_1_figure(conv: SparseConv, name: str = "C3", inputs: str = "S2") -> Figure:
    """The connection table of a sparse conv layer (Table I for C3), drawn from the module itself: one row per input
    map, one column per output map, numbered from 0 as in the paper; a connected cell is filled, coloured by the norm
    of the trained 5x5 kernel that joins the two maps, an empty one stays white."""
    cells = connection_cells(conv)
    norms = conv.dense_weight().detach().float().cpu().flatten(2).norm(dim=2).T  # (in, out), 0 where unconnected
    shown = np.ma.masked_array(norms.numpy(), mask=~cells.numpy())
    size = (1.6 + 0.45 * conv.out_channels, 1.4 + 0.45 * conv.in_channels)
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    # viridis has no white: a weak kernel's cell still reads as connected
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(shown, cmap=colours, vmin=0, vmax=float(norms.max()) or 1.0)
    ax.set_xticks(range(conv.out_channels), [str(o) for o in range(conv.out_channels)], fontsize=7)
    ax.set_yticks(range(conv.in_channels), [str(i) for i in range(conv.in_channels)], fontsize=7)
    ax.set_xticks(np.arange(conv.out_channels + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(conv.in_channels + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.6", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel(f"{name} map", fontsize=8)
    ax.set_ylabel(f"{inputs} map", fontsize=8)
    bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, shrink=0.75)
    bar.set_label("trained kernel's norm", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    fig.suptitle(
        f"{TABLE_I_TITLE}: which {inputs} maps feed each {name} map ({int(cells.sum())} connections)", fontsize=10
    )
    return fig


def subsampling_figure(layers: list[tuple[str, Subsampling]]) -> Figure:
    """Each sub-sampling layer's trained coefficient and bias, one bar per map (numbered from 0 as in Table I): a map's
    2x2 sums are multiplied by its coefficient and shifted by its bias before the squashing, so a small coefficient
    keeps the map in the squashing function's near-linear part, a large one in its saturated part."""
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 1.2 + 2.2 * len(layers)), squeeze=False)
    for (name, layer), row in zip(layers, axes):
        for ax, values, what in ((row[0], layer.weight, "coefficient"), (row[1], layer.bias, "bias")):
            values = values.detach().float().cpu().numpy()
            maps = range(len(values))
            ax.bar(maps, values, color=["tab:red" if v < 0 else "tab:blue" for v in values])
            ax.axhline(0, color="black", linewidth=0.6)
            ax.set_xticks(maps, [str(m) for m in maps], fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_xlabel(f"{name} map", fontsize=8)
            ax.set_title(f"{name}: each of its {len(values)} maps' trained {what}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    names = " and ".join(name for name, _ in layers)
    fig.suptitle(f"Sub-sampling layers {names} of LeCun et al. (1998): trainable coefficient and bias per map")
    fig.tight_layout()
    return fig
