"""Every command docs/exercises.md shows runs as shown, on a tiny budget: its sweeps for real (one seed, a few
batches), src.report over what they wrote, src.visualize on a checkpoint they wrote. The measured answers in the page
come from the same commands at full length."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY, run_module
from tests.test_readme import Command, combinations, readme_commands

PAGE = ROOT / "docs" / "exercises.md"
COMMANDS = readme_commands(PAGE)
SWEEPS = [c for c in COMMANDS if c.module == "src.train"]
OUTPUTS = "outputs/"  # the page's folders, all under outputs/exercises*/, here under the test's own folder


def in_folder(token: str, folder: Path) -> str:
    """A token with the page's outputs/... paths moved under ``folder``."""
    return token.replace(OUTPUTS, f"{folder}/")


def tiny_sweep(command: Command, folder: Path) -> list[str]:
    """The sweep with one seed and a few batches per job, into ``folder``."""
    given = {a.split("=", 1)[0] for a in command.argv}
    argv = ["seed=1" if a.startswith("seed=") else in_folder(a, folder) for a in command.argv]
    return [*argv, *(o for o in TINY if o.split("=", 1)[0] not in given)]


def test_the_page_shows_every_exercise_as_a_command():
    folders = {a.split("=", 1)[1] for c in SWEEPS for a in c.argv if a.startswith("hydra.sweep.dir=")}
    exercises = {"baseline", "pooling", "activation", "learning_rate", "window", "channels", "conv_layers"}
    exercises |= {"fc_layers", "init", "epochs", "improved", "improved_mnist"}
    assert {f"outputs/exercises/{name}" for name in exercises} <= folders
    assert all("seed=1,2,3" in c.argv for c in SWEEPS), [str(c) for c in SWEEPS if "seed=1,2,3" not in c.argv]
    modules = {c.module for c in COMMANDS}
    assert {"src.train", "src.report", "src.visualize"} <= modules


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict[int, object]]:
    """Every sweep of the page on a tiny budget, two at a time (2 cores)."""
    folder = tmp_path_factory.mktemp("exercises")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.line: pool.submit(run_module, "src.train", *tiny_sweep(c, folder)) for c in SWEEPS}
        return folder, {line: future.result() for line, future in futures.items()}


@pytest.mark.parametrize("command", SWEEPS, ids=[f"L{c.line}" for c in SWEEPS])
def test_each_exercise_sweep_runs_every_job(command: Command, tiny_runs):
    folder, results = tiny_runs
    result = results[command.line]
    assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    sweep = Path(in_folder(next(a for a in command.argv if a.startswith("hydra.sweep.dir=")).split("=", 1)[1], folder))
    jobs = sorted(p.parent.parent for p in sweep.glob("*/.hydra/config.yaml"))
    expected = combinations(["seed=1" if a.startswith("seed=") else a for a in command.argv])
    assert len(jobs) == len(expected), (command, [j.name for j in jobs])
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["status"] == "completed", job


def test_the_report_and_the_pictures_run_on_what_the_sweeps_wrote(tiny_runs, tmp_path: Path):
    folder, results = tiny_runs
    assert all(r.returncode == 0 for r in results.values())
    baseline = folder / "exercises" / "baseline" / "0_seed=1"
    for command in [c for c in COMMANDS if c.module != "src.train"]:
        argv = [in_folder(a.replace("${run}", f"{baseline}/"), folder) for a in command.argv]
        result = run_module(command.module, *argv)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        if command.module == "src.report":
            assert (Path(argv[0]) / "report.md").is_file() and (Path(argv[0]) / "curves.png").is_file()
