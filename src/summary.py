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
from src.training.lit_module import LitLeNet5
from src.training.rules import check_training_config

# the recipe knobs named in the table's title
SHOWN = ("activation", "pooling", "init", "batch_norm", "dropout", "channels", "kernel_size", "hidden", "input_size")


def summarize(cfg: DictConfig) -> str:
    check_training_config(cfg, [integer("max_depth", -1)])
    module = LitLeNet5.from_config(cfg)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    shown = ", ".join(f"{k}={model[k]}" for k in SHOWN if k in model)
    summary = ModelSummary(module, max_depth=int(cfg.max_depth))
    # ModelSummary rounds its totals (69.5 K); the tutorials compare exact counts
    lines = [
        f"LeNet-5 ({shown})",
        str(summary),
        f"Total params: {summary.total_parameters:,}",
        f"Trainable params: {summary.trainable_parameters:,}",
        f"Non-trainable params: {summary.total_parameters - summary.trainable_parameters:,}",
    ]
    table = "\n".join(lines)
    print(table)
    (Path(cfg.paths.output_dir) / "summary.txt").write_text(table + "\n")
    return table


main = hydra_entry_point(summarize, "summary")


if __name__ == "__main__":
    main()
