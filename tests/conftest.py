"""Shared fixtures. Every test reads the real IDX files: DATA_DIR, or ../shared/datasets beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MNIST" / "raw").is_dir():
        pytest.fail(f"real MNIST files not found under DATA_DIR={DATA_DIR}; see README (Data)")
    return DATA_DIR
