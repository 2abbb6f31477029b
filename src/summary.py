"""Inspect the network: ``python -m src.summary [model.activation=tanh model.pooling=avg ...]``.

Prints the table the tutorials print (each layer, its output shape for one 32x32 input, its parameters) with
the totals, and saves it as summary.txt in its run folder (outputs/summary/<date>/<time>_<pid>). Needs no data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.config import CONFIG_DIR, validate
from src.errors import run_entry_point
from src.models.lenet5 import INPUT_SIZE, lenet5_from_config

log = logging.getLogger(__name__)


# the recipe knobs named in the table's title
SHOWN = ("activation", "pooling", "init", "batch_norm", "dropout", "channels", "kernel_size", "hidden", "num_classes")


def layer_rows(net: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(name, type, output shape without the batch dimension, parameters) for each leaf layer, in call order."""
    rows: list[tuple[str, str, tuple[int, ...], int]] = []
    leaves = {m: name for name, m in net.named_modules() if not list(m.children())}
    # Forward hooks see the real output of each call, so the shapes are measured, not derived.
    hooks = [
        m.register_forward_hook(
            lambda mod, _inp, out: rows.append(
                (leaves[mod], type(mod).__name__, tuple(out.shape[1:]), sum(p.numel() for p in mod.parameters()))
            )
        )
        for m in leaves
    ]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return rows


def format_table(net: nn.Module, input_shape: tuple[int, ...], title: str) -> str:
    rows = layer_rows(net, input_shape)
    shape = lambda s: "x".join(map(str, s))  # noqa: E731
    name_w = max(len("Layer"), *(len(f"{n} ({t})") for n, t, _, _ in rows))
    header = f"{'Layer':<{name_w}}  {'Output shape':>12}  {'Param #':>9}"
    rule = "-" * len(header)
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    size_mb = sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20
    lines = [title, rule, header, rule, f"{'(input)':<{name_w}}  {shape(input_shape):>12}  {'-':>9}"]
    lines += [f"{f'{n} ({t})':<{name_w}}  {shape(s):>12}  {p:>9,}" for n, t, s, p in rows]
    lines += [
        rule,
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        f"Params size: {size_mb:.2f} MB",
    ]
    return "\n".join(lines)


def summarize(cfg: DictConfig) -> str:
    validate(cfg)
    args = OmegaConf.to_container(cfg.model, resolve=True)
    net = lenet5_from_config(args)
    shown = ", ".join(f"{k}={args[k]}" for k in SHOWN if k in args)
    table = format_table(net, (args.get("in_channels", 1), INPUT_SIZE, INPUT_SIZE), f"LeNet-5 ({shown})")
    print(table)
    (Path(cfg.paths.output_dir) / "summary.txt").write_text(table + "\n")
    return table


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="summary")
def main(cfg: DictConfig) -> None:
    run_entry_point(summarize, cfg)


if __name__ == "__main__":
    main()
