"""The helpers package has no import circle: every relative import (at the top or inside a function) is an edge."""

import ast
from pathlib import Path

HELPERS = Path(__file__).resolve().parent.parent / "helpers"


def relative_imports(path: Path) -> set[str]:
    """The helpers modules that ``path`` imports with ``from . import x`` or ``from .x import y``, anywhere in it."""
    modules = {p.stem for p in HELPERS.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helpers."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("helpers.")}
    return found - {path.stem}


def import_graph() -> dict[str, set[str]]:
    return {path.stem: relative_imports(path) for path in sorted(HELPERS.glob("*.py"))}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by depth-first search, each as a list of modules (first repeated at the end)."""
    found, seen = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                cycle = path + [nxt]
                key = frozenset(path)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle)
            elif nxt not in path and nxt > path[0]:  # start each cycle at its smallest module, once
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def test_the_walker_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_walker_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("from . import data\n\ndef f():\n    from .chat import g\n    from . import files, os\n")
    assert relative_imports(source) >= {"data", "chat", "files"}


def test_no_import_circle_in_helpers():
    found = cycles(import_graph())
    assert not found, "import circle(s) in helpers/: " + "; ".join(" -> ".join(c) for c in found)
