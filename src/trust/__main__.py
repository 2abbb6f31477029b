"""``python -m src.trust ckpt_path=<checkpoint | run folder | sweep folder> [checks=[calibration,attacks]]``: the trust
report of trained checkpoints (see src.trust)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from src.config import CONFIG_DIR
from src.errors import run_entry_point
from src.trust.launch import trust


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="trust")
def main(cfg: DictConfig) -> None:
    run_entry_point(trust, cfg)


if __name__ == "__main__":
    main()
