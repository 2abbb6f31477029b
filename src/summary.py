"""Inspect the network: ``python -m src.summary [experiment=<recipe>] [model.activation=tanh model.pooling=avg ...]``.

Prints the network the same ``src.train`` command line would build, with Lightning's ``ModelSummary`` (each layer,
its input and output shape for one image of the size ``data.pad`` gives, its parameters) and the exact totals, and
saves it as summary.txt in its run folder (outputs/summary/runs/<date>/<time>_<pid>). Needs no data.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from lightning.pytorch.utilities.model_summary import ModelSummary
from omegaconf import DictConfig, OmegaConf

from src.config import CONFIG_DIR
from src.errors import run_entry_point
from src.lit_module import LitLeNet5
from src.validation import validate

# the recipe knobs named in the table's title
SHOWN = ("activation", "pooling", "init", "batch_norm", "dropout", "channels", "kernel_size", "hidden", "input_size")


def summarize(cfg: DictConfig) -> str:
    validate(cfg)
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


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="summary")
def main(cfg: DictConfig) -> None:
    run_entry_point(summarize, cfg)


if __name__ == "__main__":
    main()
