"""The benchmark in tiny mode: every variant runs (a few batches) and the table and chart are written."""

import json
from pathlib import Path

import pytest

from tests.helpers import run_module


def test_bench_tiny_writes_its_table_and_chart(tmp_path: Path, data_dir):
    result = run_module("src.bench", "--tiny", "--out", str(tmp_path), "--extra", "classic=data.pipeline=classic")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    for variant in ("textbook", "raw", "lightning", "lightning, augment=affine", "fast_mnist", "classic"):
        assert f"| {variant} |" in table
    for pair in ("lightning / textbook:", "lightning / raw:", "raw / textbook:", "augment / lightning:"):
        assert pair in table
    assert "per round" in table
    for level in ("minimal", "module", "pipeline"):  # the paired per-step measurement, one row per level
        assert f"| {level}: " in table
    assert "failed" not in table
    assert "| seed | seconds of training |" in table and " seeds reached 99.0%" in table  # tiny: seed 1's run
    assert (tmp_path / "chart.png").stat().st_size > 5_000
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    paired = results.pop("paired")
    assert all(r["exit_code"] == 0 and r["epoch_seconds"] and r["peak_rss_mb"] > 0 for r in results.values())
    # tiny mode: 5 steps per epoch in segments of 2, counted after the first of 2 epochs -> 2 segments per level
    for r in paired.values():
        assert r["exit_code"] == 0 and r["segments"] == 2 and r["lightning_ms"] > 0 and r["plain_ms"] > 0
    # the raw loop and src.train see the same data order and model: same accuracy after the same batches
    assert results["raw"]["test_acc"] == pytest.approx(results["lightning"]["test_acc"], abs=1e-6)


def test_report_ratios_pair_rounds_and_pool_medians(tmp_path: Path):
    """Each ratio twice: of the pooled medians, and per round (a slow round slows every variant in it alike)."""
    from argparse import Namespace

    from src.bench.results import combine
    from src.bench.results import write_results as write_report

    def variant(rounds: list[list[float]]) -> dict:  # epoch seconds per round; each round's first epoch is dropped
        runs = [{"exit_code": 0, "epoch_seconds": r, "test_acc": 0.98, "peak_rss_mb": 900.0} for r in rounds]
        return combine(runs, "command")

    results = {
        "textbook": variant([[9.0, 8.0, 8.0, 8.0], [13.0, 12.0, 12.0, 12.0]]),
        "raw": variant([[9.0, 2.0, 2.0, 2.0], [9.0, 6.0, 6.0, 6.0]]),  # per round 0.25 and 0.5; pooled medians 4 / 10
        "lightning": variant([[9.0, 4.0, 4.0, 4.0], [9.0, 6.0, 6.0, 6.0]]),
    }
    args = Namespace(tiny=False, limit=5, batch_size=256, epochs=4, rounds=2, segment=10)
    info = {"date": "2026-11-22 12:00", "machine": "test", "versions": "test"}
    table = write_report(tmp_path, results, info, args)
    assert "- raw / textbook: 0.400 (ratio of the medians above); per round 0.375 median, 0.250-0.500 range" in table
    assert "- lightning / raw: 1.250 (ratio of the medians above); per round 1.500 median, 1.000-2.000 range" in table
    assert "- lightning / textbook: 0.500" in table and "the floor for lightning / textbook" in table


def test_time_to_accuracy_in_raw_epochs_pairs_each_seed_with_its_round():
    """Each seed's seconds to 99% over the raw loop's training-only epoch (its validation left out, as the clock leaves
    validations out): of its own round, and of all rounds pooled; a seed that never reached 99% is named."""
    from src.bench.results import combine, time_to_accuracy_lines

    SCORES = {"test_acc": 0.98, "peak_rss_mb": 900.0}
    raw = combine(
        [
            {"round": 0, "exit_code": 0, "epoch_seconds": [9.0, 2.5, 2.5], "train_seconds": [8.0, 2.0, 2.0], **SCORES},
            {"round": 1, "exit_code": 0, "epoch_seconds": [9.0, 4.5, 4.5], "train_seconds": [8.0, 4.0, 4.0], **SCORES},
        ],
        "raw",
    )
    tta = {
        "rounds": [
            {"round": 0, "seed": 1, "exit_code": 0, "seconds_to_target": 3.0},
            {"round": 1, "seed": 2, "exit_code": 0, "seconds_to_target": 5.0},
            {"round": 1, "seed": 3, "exit_code": 0, "tta_curve": [(1.0, 0.95), (2.0, 0.9875)]},
            {"round": 1, "seed": 4, "exit_code": 1},  # crashed: counted, not dropped
            {"round": 2, "seed": 5, "exit_code": 0, "seconds_to_target": 9.0},  # no raw run in round 2
        ]
    }
    lines = time_to_accuracy_lines(tta, raw)
    assert "raw-loop epoch of training alone: 3.000 s, median" in lines[1]  # pooled: 2, 2, 4, 4 (first epochs out)
    assert "| 1 | 3.00 | 1.00 | 1.50 |" in lines and "| 2 | 5.00 | 1.67 | 1.25 |" in lines
    assert "| 3 | not reached (best 0.9875) | | |" in lines
    assert "| 4 | failed (exit 1) | | |" in lines and "| 5 | 9.00 | 3.00 | n/a |" in lines
    assert lines[-1] == (
        "- 3 of 5 seeds reached 99.0%; the slowest in 1.50 raw-loop epochs of time (paired by round), "
        "1 without a raw run in its round"
    )


def test_plain_steps_between_alternates_segments_within_each_epoch(data_dir, tmp_path: Path):
    """5 Lightning steps per epoch in segments of 3: one segment per epoch, each followed by 3 plain steps that
    really train the plain network; steps 4-5 start no segment, and the count restarts each epoch, so nothing
    spans an epoch's end (a count carried over would give a second segment in epoch 2). A validation after 2 of
    4 steps leaves no complete segment (without the restart there it would time one across the validation)."""
    import torch

    from src.bench.paired import PlainStepsBetween, paired_summary, run_paired
    from src.core.config import compose_config

    cfg = compose_config(f"paths.data_dir={data_dir}", "data.batch_size=64")
    probe = PlainStepsBetween(cfg, torch.device("cpu"), segment=3)
    before = [p.detach().clone() for p in probe.net.parameters()]
    for steps, validation_at in ((5, None), (5, None), (4, 2)):
        probe.on_train_epoch_start(None, None)
        for i in range(steps):
            if i == validation_at:  # validation in mid-epoch: the segment it interrupts is dropped
                probe.on_validation_start(None, None)
            probe.on_train_batch_start(None, None, None, i)
            probe.on_train_batch_end(None, None, None, None, i)
    assert [len(e) for e in probe.lightning_ms] == [len(e) for e in probe.plain_ms] == [1, 1, 0]
    assert any(not torch.equal(a, b) for a, b in zip(before, probe.net.parameters()))

    overrides = [f"paths.data_dir={data_dir}", "trainer.max_epochs=2"]
    result = run_paired("minimal", accelerator="cpu", limit=5, segment=3, overrides=overrides, output_dir=tmp_path)
    assert [len(e) for e in result["lightning_ms"]] == [len(e) for e in result["plain_ms"]] == [1, 1]
    # the summary leaves out the first (warm-up) epoch; its ratio is total over total, not a median of ratios
    summary = paired_summary({"lightning_ms": [[50.0], [2.0, 2.0, 8.0]], "plain_ms": [[1.0], [1.0, 1.0, 1.0]]})
    assert summary["segments"] == 3 and summary["lightning_ms"] == pytest.approx(4.0)
    assert summary["ratio"] == pytest.approx(4.0) and summary["ratio_q1"] == pytest.approx(2.0)
