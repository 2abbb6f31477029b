"""How far to trust a trained LeNet-5: ``python -m src.trust ckpt_path=<checkpoint | run folder | sweep folder>
[checks=[calibration,attacks]]``.

The settings are checked, every checkpoint is found (src.trust.targets), loaded and checked before any report
starts, then each checkpoint's report (src.trust.checks) goes into its run folder's ``trust/``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src.core.entry_point import hydra_entry_point
from src.core.settings import (
    Rule,
    accelerator_check,
    as_list,
    check,
    choice,
    choices,
    integer,
    is_int,
    is_number,
    required,
)
from src.training.checkpoints import load_checkpoint
from src.trust.checks import ATTACKS, CHECKS, trust_report, trust_summary
from src.trust.corruptions import CORRUPTIONS, unavailable_corruptions
from src.trust.targets import USAGE, device_for, find_targets, report_folder, splits

log = logging.getLogger(__name__)
OFFICIAL_FOLDER = "mnist_c"  # under the data root: <name>/test_images.npy and test_labels.npy, as zenodo ships them
ATTRIBUTION_METHODS = ("saliency", "integrated_gradients", "grad_cam")
RULES = [
    choices("checks", CHECKS, "must be a list of some of"),
    choice("split", ("test", "val")),
    integer("seed"),
    Rule("limit", lambda v: v is None or (is_int(v) and v >= 1), "must be null (all test images) or an integer >= 1"),
    integer("batch_size", 1),
    integer("calibration.bins", 1, note="Guo et al.: 15"),
    Rule(
        "corruptions.names",
        lambda v: v == "all" or (bool(as_list(v)) and all(c in CORRUPTIONS for c in as_list(v))),
        f"must be all, or a list of some of {', '.join(CORRUPTIONS)}",
    ),
    choice("corruptions.source", ("auto", "generated", "official")),
    Rule(
        "attacks.epsilons",
        lambda v: bool(as_list(v)) and all(is_number(e) and 0 <= e <= 1 for e in as_list(v)),
        "must be a list of numbers in [0, 1] (L-infinity radii in pixel units of [0, 1] images)",
    ),
    choices("attacks.methods", ATTACKS, "must be a list of some of"),
    integer("attacks.pgd_steps", 1),
    Rule(
        "attacks.pgd_step_size",
        lambda v: v is None or (is_number(v) and 0 < v <= 1),
        "must be null (2.5 * epsilon / pgd_steps) or a number in (0, 1]",
    ),
    choices("attributions.methods", ATTRIBUTION_METHODS, "must be a list of some of"),
    *(integer(key, 1) for key in ("corruptions.shown", "attacks.shown", "attributions.images", "attributions.steps")),
]


def official_root(cfg: DictConfig) -> Path:
    return Path(str(cfg.data.data_dir)) / OFFICIAL_FOLDER


def corruption_problems(cfg: DictConfig) -> list[str]:
    """Corruptions that cannot be reported as asked: pen strokes on garments, official files that are not there."""
    names = OmegaConf.select(cfg, "corruptions.names")
    listed = None if names == "all" else [n for n in dict.fromkeys(as_list(names)) if n in CORRUPTIONS]
    source = cfg.corruptions.source if "corruptions" in as_list(cfg.checks) else "auto"  # files matter if checked
    return unavailable_corruptions(listed, cfg.data.dataset, source, official_root(cfg))


def trust(cfg: DictConfig) -> list[dict[str, Any]]:
    on_this_machine = accelerator_check("accelerator", ("auto", "cpu", "gpu", "cuda"))
    check(cfg, RULES, required("ckpt_path", USAGE), on_this_machine, corruption_problems)
    own = Path(HydraConfig.get().runtime.output_dir)
    targets = find_targets(str(cfg.ckpt_path), own, report_folder(cfg.split))
    # Every checkpoint is loaded and checked before the first report starts: a bad one stops the command at once.
    loaded = [load_checkpoint(target.ckpt) for target in targets]
    for checkpoint in loaded:
        checkpoint.check_dataset(cfg.data.dataset)

    device, reports = device_for(cfg.accelerator), []
    for target, checkpoint in zip(targets, loaded):
        val, test = splits(checkpoint, cfg.data, device, cfg.limit)
        if cfg.split == "val":  # choosing a recipe: never look at the test set (the temperature is fit on it too)
            test = (val[0][: cfg.limit], val[1][: cfg.limit])
        out = target.out if len(targets) == 1 or target.out != own else own / target.ckpt.stem
        report = trust_report(checkpoint, val, test, cfg, out, official_root(cfg))
        print(trust_summary(report))
        print(f"  wrote trust.json and the pictures to {out}; TensorBoard: tensorboard --logdir {out}")
        reports.append({"out": str(out), **report})
    (own / "trust_reports.json").write_text(
        json.dumps([{"ckpt_path": r["ckpt_path"], "out": r["out"]} for r in reports], indent=2)
    )
    return reports


main = hydra_entry_point(trust, "trust")


if __name__ == "__main__":
    main()
