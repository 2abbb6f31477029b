"""Inspect the network: ``python -m src.summary [experiment=<recipe>] [model.activation=tanh model.pooling=avg ...]``.

Prints the network the same ``src.train`` command line would build, with Lightning's ``ModelSummary`` (each layer,
its input and output shape for one image of the size ``data.pad`` gives, its parameters) and the exact totals, and
saves it as summary.txt in its run folder (outputs/summary/runs/<date>/<time>_<pid>). Needs no data.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.utilities.model_summary import ModelSummary
from omegaconf import DictConfig, OmegaConf

from src.core.entry_point import hydra_entry_point
from src.core.settings import integer
from src.models.lenet1998 import PAPER_COUNTS, LeNet1998, layer_counts
from src.training.lit_module import LitLeNet5
from src.training.rules import check_training_config

# the recipe knobs named in the table's title
SHOWN = ("activation", "pooling", "init", "batch_norm", "dropout", "channels", "kernel_size", "hidden", "input_size",
         "c3", "subsampling", "squashing", "output")  # fmt: skip


def summarize(cfg: DictConfig) -> str:
    check_training_config(cfg, [integer("max_depth", -1)])
    module = LitLeNet5.from_config(cfg)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    shown = ", ".join(f"{k}={model[k]}" for k in SHOWN if k in model)
    summary = ModelSummary(module, max_depth=int(cfg.max_depth))
    # ModelSummary rounds its totals (69.5 K); the tutorials compare exact counts
    lines = [
        f"{'LeNet-5 of LeCun et al. (1998)' if isinstance(module.net, LeNet1998) else 'LeNet-5'} ({shown})",
        str(summary),
        f"Total params: {summary.total_parameters:,}",
        f"Trainable params: {summary.trainable_parameters:,}",
        f"Non-trainable params: {summary.total_parameters - summary.trainable_parameters:,}",
    ]
    if isinstance(module.net, LeNet1998):
        lines += ["", *paper_table(module.net)]
    table = "\n".join(lines)
    print(table)
    (Path(cfg.paths.output_dir) / "summary.txt").write_text(table + "\n")
    return table


def paper_table(net: LeNet1998) -> list[str]:
    """Each layer's trainable parameters and connections beside the counts LeCun et al. (1998) give in section II.B."""
    counts = layer_counts(net)
    rows = [f"{'layer':<7}{'trainable':>11}{'paper':>9}{'connections':>14}{'paper':>10}"]
    for name, (params, connections) in counts.items():
        paper_params, paper_connections = PAPER_COUNTS[name]
        rows.append(f"{name:<7}{params:>11,}{paper_params:>9,}{connections:>14,}{paper_connections:>10,}")
    totals = [sum(c[i] for c in counts.values()) for i in (0, 1)]
    paper_totals = [sum(c[i] for c in PAPER_COUNTS.values()) for i in (0, 1)]
    rows.append(f"{'total':<7}{totals[0]:>11,}{paper_totals[0]:>9,}{totals[1]:>14,}{paper_totals[1]:>10,}")
    return ["Beside LeCun et al. (1998), section II.B:", *rows]


main = hydra_entry_point(summarize, "summary")


if __name__ == "__main__":
    main()
