"""Every ``python -m src....`` command the README (and docs/results.md, the measurements moved out of it) shows runs
as shown; the README stays a manual.

The commands are read from the pages' fenced code blocks (and ``$ `` prompts), trailing ``# comments`` dropped:
- single training runs run for real as subprocesses, on a tiny budget (``TINY``) in a temporary folder;
- sweeps (``-m``) are expanded into their combinations, and each must compose with Hydra and pass validation;
- ``src.summary`` runs (it needs no data); ``src.bench`` lines must parse, and their ``--extra`` overrides compose;
- a ``$ `` prompt followed by output must print that output (``[...]`` stands for any prefix, ``...`` for more lines);
- commands that need a checkpoint or an existing folder (``<placeholders>``, ``src.report``) run on real ones: the
  session's trained checkpoints, MNIST test digits saved as the image files they name, a copy of a finished run;
  SLURM sweeps (``<partition>``) compose for every job, as the other sweeps do.
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from src.training.rules import check_training_config as validate
from tests.helpers import ROOT, TINY, compose_config, run_module

README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"  # the figures and their commands, moved out of the README
README_LIMIT = 12_000  # characters: a manual a newcomer reads top to bottom


@dataclass
class Command:
    page: str  # README.md or docs/results.md
    line: int  # 1-based line number in the page
    tokens: list[str]  # the command line as the shell splits it, without its trailing comment
    output: list[str] = field(default_factory=list)  # what the README shows it printing (after a `$ ` prompt)

    @property
    def text(self) -> str:
        return shlex.join(self.tokens)

    @property
    def argv(self) -> list[str]:
        return self.tokens[3:]  # after "python -m src.<module>"

    @property
    def module(self) -> str:
        return self.tokens[2]

    @property
    def sweep(self) -> bool:
        return "-m" in self.argv or "--multirun" in self.argv

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def readme_commands(path: Path = README) -> list[Command]:
    """A page's ``python -m src.`` lines in fenced code blocks or after a ``$ `` prompt, with shown output."""
    commands: list[Command] = []
    in_block, prompted = False, None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if text.startswith("```"):
            in_block, prompted = not in_block, None
            continue
        prompt = text.startswith("$ ")
        if prompt:
            text = text[2:].strip()
        elif not in_block:
            continue
        if text.startswith("python -m src."):
            page = str(path.relative_to(ROOT))
            commands.append(Command(page, number, shlex.split(text, comments=True)))  # without a trailing "# comment"
            prompted = commands[-1] if prompt else None
        elif prompted is not None and text:
            prompted.output.append(text)
    return commands


COMMANDS = readme_commands(README) + readme_commands(RESULTS)


# src.trust's README commands run on 200 test images with a 2-step PGD: the full report takes two minutes
TRUST_BUDGET = ["limit=200", "attacks.pgd_steps=2", "attributions.steps=8"]


def needs_artefacts(command: Command) -> bool:
    """Needs a checkpoint or an existing folder: a ``<placeholder>``, or src.report / src.trust (a finished sweep's
    folder)."""
    return command.module in ("src.report", "src.trust") or "<" in command.text


def select(module: str, sweep: bool | None = None) -> list[Command]:
    return [
        c for c in COMMANDS if c.module == module and not needs_artefacts(c) and (sweep is None or c.sweep == sweep)
    ]


TRAIN_RUNS = select("src.train", sweep=False)
SWEEPS = select("src.train", sweep=True)
SUMMARIES = select("src.summary")
BENCHES = select("src.bench")
DEMOS = [c for c in COMMANDS if c.module == "src.demo"]
WITH_ARTEFACTS = [c for c in COMMANDS if needs_artefacts(c) and c not in DEMOS]


def ids(commands: list[Command]) -> list[str]:
    return [c.where.replace("README.md:", "L").replace("docs/results.md:", "results:L") for c in commands]


def test_the_readme_shows_commands_of_every_kind():
    """A parser that finds nothing would make every test below pass vacuously."""
    assert len(TRAIN_RUNS) >= 5 and SWEEPS and SUMMARIES and BENCHES and DEMOS, [str(c) for c in COMMANDS]
    assert any(c.text == "python -m src.train" and c.page == "README.md" for c in TRAIN_RUNS), "the first run, as shown"
    assert any(c.page == "docs/results.md" for c in SWEEPS), "the recipes' sweeps, on the results page"
    handled = {id(c) for c in TRAIN_RUNS + SWEEPS + SUMMARIES + BENCHES + WITH_ARTEFACTS + DEMOS}
    unhandled = [str(c) for c in COMMANDS if id(c) not in handled]
    assert not unhandled, f"README commands this test has no rule for: {unhandled}"


def digit_files(given: str, tmp_path: Path, data_dir: Path) -> str:
    """``inputs=`` as the README writes it (``[seven.png,two.jpg]`` or ``my_digits/``), made real: MNIST test digits
    saved under those names in ``tmp_path``; returns the value with their paths."""
    from PIL import Image
    from torchvision.datasets import MNIST

    digits = MNIST(str(data_dir), train=False).data[:3].numpy()
    if given.startswith("["):
        names = [n.strip() for n in given.strip("[]").split(",")]
        for name, digit in zip(names, digits):
            Image.fromarray(digit).save(tmp_path / name)
        return "[" + ",".join(str(tmp_path / n) for n in names) + "]"
    folder = tmp_path / given.rstrip("/")
    folder.mkdir(parents=True)
    for n, digit in enumerate(digits):
        Image.fromarray(digit).save(folder / f"digit{n}.png")
    return str(folder)


@pytest.mark.parametrize("command", WITH_ARTEFACTS, ids=ids(WITH_ARTEFACTS))
def test_commands_on_a_checkpoint_or_folder_run_as_shown(
    command: Command, tmp_path: Path, data_dir: Path, mnist_run, fashion_run
):
    if command.sweep:  # a SLURM sweep: every job composes with a partition's name in place of <partition>
        for job in combinations([a.replace("<partition>", "debug") for a in command.argv]):
            compose_and_validate(job)
        return
    # garment classes (d2l's sweaters and coats) need the Fashion-MNIST checkpoint; everything else the MNIST one
    ckpt = fashion_run.ckpt if any(a.startswith("classes=") for a in command.argv) else mnist_run.ckpt
    args = list(command.argv)
    if command.module == "src.trust":  # it writes into the run folder: a copy of the session's run, on a small budget
        sweep = tmp_path / "sweep"
        shutil.copytree(mnist_run.run, sweep / "0")  # (a sweep job's folder name has an "=", which an override quotes)
        ckpt = sweep / "0" / "checkpoints" / Path(mnist_run.ckpt).name
        # <folder>, or a folder of the README's own (outputs/guo): the copied run's
        args = [a.replace("<folder>", str(sweep)) if "<" in a else a for a in args]
        args = [f"ckpt_path={sweep}" if a.startswith("ckpt_path=") and "<" not in a else a for a in args]
        given = {a.split("=", 1)[0] for a in args}
        args += [o for o in TRUST_BUDGET if o.split("=", 1)[0] not in given]
    args = [a.replace("<checkpoint>", str(ckpt)) for a in args]
    args = ["inputs=" + digit_files(a[7:], tmp_path, data_dir) if a.startswith("inputs=") else a for a in args]
    if command.module == "src.report":  # the folder it reads: a finished run, copied
        shutil.copytree(mnist_run.run, tmp_path / "sweep" / "0_seed=1")
        args[0] = str(tmp_path / "sweep")
    else:
        args.append(f"paths.log_dir={tmp_path / 'outputs'}")
    assert "<" not in " ".join(args), f"{command}: a placeholder this test cannot fill"
    result = run_module(command.module, *args)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr[-3000:]}"
    if command.module == "src.report":
        assert (tmp_path / "sweep" / "report.md").is_file()
    else:
        (run,) = (tmp_path / "outputs").glob("*/runs/*/*")  # outputs/<task_name>/runs/<date>/<time>_<pid>
        assert run.parent.parent.parent.name == command.module.removeprefix("src."), run
    assert_shows(command, result.stdout + result.stderr)


# --- the README is a manual: short, and its tree is the code's -------------------------------------------------


def test_the_readme_is_a_manual_of_at_most_12000_characters():
    size = len(README.read_bytes())  # as the project's review counts it: ± and the tree's lines are 2-3 bytes each
    assert size <= README_LIMIT, (
        f"README.md has {size:,} characters, over the {README_LIMIT:,} of a manual a newcomer reads top to bottom: "
        "move findings, dated tables and benchmark figures to docs/ (docs/results.md), and link them"
    )


def readme_tree() -> str:
    """The README's tree of src/ and conf/: its first ```text block."""
    text = README.read_text()
    return text.split("```text\n", 1)[1].split("```", 1)[0]


def test_the_readmes_tree_names_every_part_of_src_and_conf():
    """Every folder and module of src/ (a new tool, command or library folder) and every config group of conf/ is in
    the README's tree, and the tree names nothing that is gone."""
    tree = readme_tree()
    words = set(re.findall(r"[A-Za-z_][\w.]*/?", tree))
    src = ROOT / "src"
    parts = {p.name + "/" for p in src.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    parts |= {p.name for p in src.glob("*.py") if p.name != "__init__.py"}
    groups = {p.name + "/" for p in (ROOT / "conf").iterdir() if p.is_dir()}
    entry_configs = {p.name for p in (ROOT / "conf").glob("*.yaml")}
    assert parts - words == set(), f"src/ parts missing from the README's tree: {sorted(parts - words)}"
    assert groups - words == set(), f"conf/ groups missing from the README's tree: {sorted(groups - words)}"
    assert entry_configs - words == set(), (
        f"conf/*.yaml missing from the README's tree: {sorted(entry_configs - words)}"
    )
    named = {w for w in words if w.endswith((".py", ".yaml"))}
    gone = {w for w in named if not list(ROOT.glob(f"src/**/{w}")) and not list(ROOT.glob(f"conf/**/{w}"))}
    assert not gone, f"the README's tree names files that do not exist: {sorted(gone)}"
    for folder in ("training", "models", "data", "core"):
        for module in (src / folder).glob("*.py"):
            if module.stem != "__init__":
                assert module.stem in words, f"src/{folder}/{module.name} is not named in the README's tree"


# --- single training runs: for real, on a tiny budget ---------------------------------------------------------


def no_gpu_here(command: Command) -> bool:
    asks_for_gpu = "trainer.accelerator=gpu" in command.argv or "trainer=gpu" in command.argv
    return asks_for_gpu and not torch.cuda.is_available()


def tiny(command: Command, run_dir: Path) -> list[str]:
    """The command's own overrides, then a tiny budget for every key the command does not set itself."""
    given = {a.split("=", 1)[0] for a in command.argv}
    # paths.log_dir: where the shared stores (MLflow's database) go, kept out of the project's outputs/
    return [
        *command.argv,
        *(o for o in TINY if o.split("=", 1)[0] not in given),
        f"hydra.run.dir={run_dir}",
        f"paths.log_dir={run_dir.parent / 'outputs'}",
    ]


@pytest.fixture(scope="module")
def train_runs(tmp_path_factory: pytest.TempPathFactory, data_dir) -> dict[int, tuple]:
    """Every README training run, two at a time (the machine has 2 cores); a command the README shows twice (the
    set-up's ``python -m src.train`` and the recipes' list) runs once."""
    folder = tmp_path_factory.mktemp("readme_runs")
    first = {}  # the command's text -> where it first appears
    for c in TRAIN_RUNS:
        first.setdefault(c.text, c.where)
    jobs = {c.where: (c, folder / f"run{n}") for n, c in enumerate(TRAIN_RUNS) if first[c.text] == c.where}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {at: pool.submit(run_module, "src.train", *tiny(c, run_dir)) for at, (c, run_dir) in jobs.items()}
        done = {at: (futures[at].result(), jobs[at][1]) for at in jobs}
    return {c.where: done[first[c.text]] for c in TRAIN_RUNS}


def assert_shows(command: Command, printed: str) -> None:
    """Each output line the README shows after the command is printed (``[...]``: any prefix; ``...``: more)."""
    for shown in command.output:
        if shown == "...":
            continue
        assert shown.removeprefix("[...]") in printed, f"{command} shows {shown!r}; it printed:\n{printed[-3000:]}"


@pytest.mark.parametrize("command", TRAIN_RUNS, ids=ids(TRAIN_RUNS))
def test_training_command_runs_as_shown(command: Command, train_runs: dict):
    result, run_dir = train_runs[command.where]
    printed = result.stdout + result.stderr
    if no_gpu_here(command):
        # No CUDA GPU on this machine: the run must stop before any work with a message naming the key.
        assert result.returncode == 2, f"{command}: exit {result.returncode}\n{result.stderr[-3000:]}"
        assert "trainer.accelerator" in result.stderr, result.stderr[-3000:]
        assert not (run_dir / "checkpoints").exists()
    elif any("Invalid config" in line for line in command.output):
        assert result.returncode == 2, f"{command}: exit {result.returncode}\n{result.stderr[-3000:]}"
        assert not (run_dir / "checkpoints").exists()
    else:
        assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr[-3000:]}"
        assert (run_dir / "metrics.json").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert_shows(command, printed)


# --- sweeps: every combination composes and validates ---------------------------------------------------------


def combinations(argv: list[str]) -> list[list[str]]:
    """A sweep's jobs as lists of overrides: Hydra's basic sweeper's own expansion of the comma lists."""
    overrides = OverridesParser.create().parse_overrides([a for a in argv if a not in ("-m", "--multirun")])
    return [job for batch in BasicSweeper.split_arguments(overrides, max_batch_size=None) for job in batch]


def compose_and_validate(overrides: list[str]) -> None:
    validate(compose_config(*overrides))


@pytest.mark.parametrize("command", SWEEPS, ids=ids(SWEEPS))
def test_sweep_command_composes_for_every_job(command: Command):
    jobs = combinations(command.argv)
    assert jobs, command
    for job in jobs:
        try:
            compose_and_validate(job)
        except Exception as exc:  # Hydra's and our own errors, named with the job that failed
            pytest.fail(f"{command}\njob {job}: {type(exc).__name__}: {exc}")


# --- src.summary: runs, with no data ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", SUMMARIES, ids=ids(SUMMARIES))
def test_summary_command_runs_without_data(command: Command, tmp_path: Path):
    no_data = {"DATA_DIR": str(tmp_path / "no-data-here")}
    result = run_module("src.summary", *command.argv, f"hydra.run.dir={tmp_path / 'run'}", env=no_data)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Total params" in result.stdout + result.stderr
    assert_shows(command, result.stdout + result.stderr)


# --- src.bench: its arguments parse, its extra variants compose; the benchmark itself is not run -----------------


class Parsed(BaseException):  # BaseException: not swallowed by an `except Exception` in the benchmark
    def __init__(self, args: argparse.Namespace) -> None:
        self.namespace = args


@pytest.mark.parametrize("command", BENCHES, ids=ids(BENCHES))
def test_bench_command_parses(command: Command, monkeypatch: pytest.MonkeyPatch):
    def parse_and_stop(parser: argparse.ArgumentParser, args=None, namespace=None):
        raise Parsed(original(parser, args, namespace))

    original = argparse.ArgumentParser.parse_args
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    monkeypatch.setattr(sys, "argv", ["src.bench", *command.argv])
    with pytest.raises(Parsed) as parsed:  # argparse's own error would be SystemExit(2) instead
        runpy.run_module("src.bench", run_name="__main__", alter_sys=True)
    for extra in getattr(parsed.value.namespace, "extra", None) or []:
        name, _, overrides = extra.partition("=")
        assert name and overrides, f"{command}: --extra {extra!r} is not NAME=OVERRIDES"
        compose_and_validate(shlex.split(overrides))


# --- src.demo: the server starts as shown and serves its checkpoint -----------------------------------------------
@pytest.mark.parametrize("command", DEMOS, ids=ids(DEMOS))
def test_demo_command_serves_as_shown(command: Command, tmp_path: Path, mnist_run):
    """Started as shown, on a free port (``port=0`` in place of any shown), ``<checkpoint>`` the session's; without
    ``ckpt_path`` it finds the finished run in outputs/ (a copy of the session's) and serves its best checkpoint."""
    import json
    import urllib.request

    from tests.helpers import DemoServer

    args = [a.replace("<checkpoint>", str(mnist_run.ckpt)) for a in command.argv if not a.startswith("port=")]
    outputs = tmp_path / "outputs"
    shutil.copytree(mnist_run.run, outputs / "train" / "runs" / "day" / "time")
    with DemoServer(*args, "port=0", f"paths.log_dir={outputs}", f"hydra.run.dir={tmp_path / 'demo'}") as server:
        with urllib.request.urlopen(server.url + "/api/model", timeout=30) as response:
            model = json.loads(response.read())
    assert model["checkpoint"]["path"] == str(mnist_run.ckpt), command
