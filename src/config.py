"""Config helpers shared by every entry point: resolvers the configs use."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    # ${project_root:} makes default paths independent of the folder the user runs from;
    # ${pid:} keeps two runs started in the same second in separate folders.
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", lambda: str(os.getpid()))


register_resolvers()
