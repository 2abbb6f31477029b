"""The package's imports run downward only, floor by floor, and never in a loop, between modules or between folders.

Floors, bottom up (README's tree): the ground (``src/core``), the library (``src/models``, ``src/data``, then
``src/training``), the tools (``trust``, ``visualize``, ``report``, ``demo``, ``bench``), the commands (``train``,
``eval``, ``predict``, ``export``, ``summary``). A module imports its own folder and the floors below; the library
never imports a tool or a command, and a tool never imports another tool. Every import counts, at module level or
inside a function: a deferred import that runs back up is still an arrow back up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

SRC = ROOT / "src"
FLOORS = {  # a part of src -> its floor; a part may import parts of lower floors
    "src.core": 0,
    "src.models": 1,
    "src.data": 1,
    "src.training": 2,
    **{f"src.{tool}": 3 for tool in ("trust", "visualize", "report", "demo", "bench")},
    **{f"src.{command}": 4 for command in ("train", "eval", "predict", "export", "summary")},
    "src": 5,  # the package's face (src/__init__.py)
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def part_of(module: str) -> str:
    """The folder (or top-level module) of ``src`` that a module belongs to: ``src.training.callbacks.history`` ->
    ``src.training``; ``src.train`` -> itself."""
    return ".".join(module.split(".")[:2])


def imports_of(path: Path) -> set[str]:
    """The ``src`` modules a file imports: ``from src.x import y`` names src.x.y when that is a module, else src.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            names = [n for n in names[:-1] if n in MODULES] or [node.module]
        else:
            continue
        found |= {n for n in names if n in MODULES}
    return found - {module_name(path)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the nodes along it (depth-first search, one report per circle's entry)."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """Each import that runs up a floor or sideways into another part of the same floor, as ``a -> b (why)``."""
    found = []
    for module, targets in graph.items():
        here = part_of(module)
        for target in sorted(targets):
            there = part_of(target)
            if there == here:
                continue
            if FLOORS[there] > FLOORS[here]:
                found.append(f"{module} -> {target} (floor {FLOORS[here]} imports floor {FLOORS[there]})")
            elif FLOORS[there] == FLOORS[here]:
                found.append(f"{module} -> {target} (two parts of floor {FLOORS[here]})")
    return found


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_floor_check_finds_an_arrow_back_up_and_one_between_tools():
    graph = {
        "src.core.settings": {"src.training.rules"},  # the ground importing the library
        "src.trust.checks": {"src.demo.readout", "src.training.checkpoints"},  # a tool importing another tool
        "src.eval": {"src.training.checkpoints"},  # a command importing the library: the right way
    }
    assert wrong_way(graph) == [
        "src.core.settings -> src.training.rules (floor 0 imports floor 2)",
        "src.trust.checks -> src.demo.readout (two parts of floor 3)",
    ]


def test_imports_are_read_from_every_level():
    # a module-level import and one inside a function are both seen
    assert "src.training.rules" in GRAPH["src.train"] and "src.core.errors" in GRAPH["src.report.reading"]


def test_every_part_of_src_has_a_floor():
    assert {part_of(m) for m in MODULES} <= set(FLOORS), {part_of(m) for m in MODULES} - set(FLOORS)


def test_imports_run_downward_only():
    assert wrong_way(GRAPH) == []


def test_src_has_no_import_cycle_between_modules():
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("depth", [2, 3], ids=["top-level parts", "folders"])
def test_src_has_no_import_cycle_between_folders(depth: int):
    """Folders as nodes (``src.training``, then ``src.training.callbacks``): modules may import each other one way
    while their folders still form a loop."""
    folder = lambda name: ".".join(name.split(".")[:depth])  # noqa: E731
    graph: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        graph.setdefault(folder(module), set()).update(folder(t) for t in targets if folder(t) != folder(module))
    assert cycles(graph) == []


def test_the_sweep_report_starts_without_lightning():
    """``python -m src.report`` reads TensorBoard files and writes tables and charts: importing Lightning (and the
    torchmetrics it imports) would be most of its start-up (docs/speed.md), so it must not come in by the way."""
    code = "import sys, src.report.__main__; print(sorted({'lightning', 'torchmetrics'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
