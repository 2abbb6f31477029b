"""``python -m src.demo [ckpt_path=<checkpoint>] [host=127.0.0.1] [port=8000]``: the drawing demo (see src.demo)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from src.config import CONFIG_DIR
from src.demo.launch import serve
from src.errors import run_entry_point


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="demo")
def main(cfg: DictConfig) -> None:
    run_entry_point(serve, cfg)


if __name__ == "__main__":
    main()
