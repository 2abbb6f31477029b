"""The package's imports run one way: no module of ``src`` imports, directly or through others, one that imports it.

Every import counts, at module level or inside a function: a deferred import that closes a circle is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

SRC = ROOT / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


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
    """Every import circle, each as the modules along it (depth-first search, one report per circle's entry)."""
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


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_from_every_level():
    graph = {name: imports_of(path) for name, path in MODULES.items()}
    # a module-level import and one inside a function are both seen
    assert "src.validation" in graph["src.train"] and "src.lit_module" in graph["src.inference"]


def test_src_has_no_import_cycle():
    graph = {name: imports_of(path) for name, path in MODULES.items()}
    assert cycles(graph) == []
