"""The benchmark in tiny mode: every variant runs (a few batches) and the table and chart are written."""

import json
from pathlib import Path

import pytest

from tests.helpers import run_module


def test_bench_tiny_writes_its_table_and_chart(tmp_path: Path, data_dir):
    result = run_module("src.bench", "--tiny", "--out", str(tmp_path), "--extra", "classic=data.pipeline=classic")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    for variant in ("textbook", "raw", "lightning", "fast_mnist", "classic"):
        assert f"| {variant} |" in table
    assert "lightning / textbook:" in table and "lightning / raw:" in table and "per round" in table
    assert (tmp_path / "chart.png").stat().st_size > 5_000
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert all(r["exit_code"] == 0 and r["epoch_seconds"] and r["peak_rss_mb"] > 0 for r in results.values())
    # the raw loop and src.train see the same data order and model: same accuracy after the same batches
    assert results["raw"]["test_acc"] == pytest.approx(results["lightning"]["test_acc"], abs=1e-6)
