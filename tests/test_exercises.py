"""Every command docs/exercises.md shows runs as shown, on a tiny budget: its sweeps for real (one seed, a few
batches), src.report over what they wrote, src.visualize on a checkpoint they wrote. The measured answers in the page
come from the same commands at full length."""

from __future__ import annotations

import json
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from src.core.config import sweep_job_dir
from tests.helpers import ROOT, TINY, run_module
from tests.test_readme import Command, combinations, readme_commands

PAGE = ROOT / "docs" / "exercises.md"
COMMANDS = readme_commands(PAGE)
SWEEPS = [c for c in COMMANDS if c.module == "src.train"]
OUTPUTS = "outputs/"  # the page's folders, all under outputs/exercises*/, here under the test's own folder


def in_folder(token: str, folder: Path) -> str:
    """A token with the page's outputs/... paths moved under ``folder``."""
    return token.replace(OUTPUTS, f"{folder}/")


def page_variables(path: Path = PAGE) -> dict[str, str]:
    """The shell variables the page's code blocks set (``run='outputs/exercises/baseline/0_seed=1/'``), which its
    commands use as ``${run}``: each names one job of a sweep."""
    variables, in_block = {}, False
    for line in path.read_text().splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
        elif in_block and (match := re.match(r"^(\w+)=(\S+)", line.strip())):
            variables[match[1]] = shlex.split(match[2])[0]
    return variables


def page_job(value: str, scratch: Path) -> list[str]:
    """The overrides of the job whose folder a page variable names (``outputs/exercises/<sweep>/<job>/``): the job of
    that sweep's command that Hydra puts in that folder, named by the project's own rule (src.core.config.sweep_job_dir,
    which reads the multirun.yaml Hydra writes before the jobs start; ``scratch`` holds one)."""
    job = Path(value.rstrip("/"))
    (command,) = [c for c in SWEEPS if f"hydra.sweep.dir={job.parent}" in c.argv]
    task = [a for a in command.argv if a not in ("-m", "--multirun") and not a.startswith("hydra.")]
    (scratch / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}}))
    folders = {sweep_job_dir(n, overrides, str(scratch)): overrides for n, overrides in enumerate(combinations(task))}
    assert job.name in folders, (value, sorted(folders))
    return folders[job.name]


def tiny_job(value: str, folder: Path, scratch: Path) -> Path:
    """The tiny sweep's job (seed 1 alone, under ``folder``) that ran the configuration of the page's job: the one
    whose overrides include all of the page job's."""
    wanted = set(page_job(value, scratch))
    assert "seed=1" in wanted, (value, "the tiny sweeps run seed 1 only")
    sweep = Path(in_folder(str(Path(value.rstrip("/")).parent), folder))
    found = [
        overrides.parent.parent
        for overrides in sweep.glob("*/.hydra/overrides.yaml")
        if wanted <= set(yaml.safe_load(overrides.read_text()))
    ]
    assert len(found) == 1, (value, found)
    return found[0]


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


def test_the_page_names_jobs_its_sweeps_write(tmp_path: Path):
    """A job folder the page points at (``${run}``) is one its sweep writes."""
    variables = page_variables()
    assert {"run", "improved"} <= variables.keys(), variables
    for value in variables.values():
        page_job(value, tmp_path)  # fails naming the folders the sweep does write


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
    jobs = {name: f"{tiny_job(value, folder, tmp_path)}/" for name, value in page_variables().items()}
    commands = [c for c in COMMANDS if c.module != "src.train"]
    argvs = []
    for command in commands:
        argv = [in_folder(re.sub(r"\$\{(\w+)\}", lambda m: jobs[m[1]], a), folder) for a in command.argv]
        if command.module == "src.visualize":  # its own run folder under the test's; a small Projector embedding
            argv.append(f"hydra.run.dir={tmp_path / str(command.line)}")
            if not any(a.startswith("embedding.samples=") for a in argv):
                argv.append("embedding.samples=100")
        argvs.append(argv)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c, argv: run_module(c.module, *argv), commands, argvs))
    for command, argv, result in zip(commands, argvs, results):
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        if command.module == "src.report":
            assert (Path(argv[0]) / "report.md").is_file() and (Path(argv[0]) / "curves.png").is_file()
        if command.module == "src.visualize":  # the numbers the page quotes come from these files
            run = tmp_path / str(command.line)
            assert (run / "images.csv").is_file() and list((run / "feature_maps").glob("*.png")), command
            if any(a.startswith("classes=") for a in argv):
                assert (run / "class_similarity.csv").is_file(), command
