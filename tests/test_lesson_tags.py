"""Lesson tags: a helper's docstring ends with the first notebook that calls it, and every public helper has a user.

A tag is ``(NN_slug)`` at the end of a docstring's first paragraph. A function that no notebook calls carries no
notebook tag (it may say what uses it instead, e.g. ``(used by validation)``).
"""

import ast
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HELPERS = REPO / "helpers"
MODULES = sorted(p.stem for p in HELPERS.glob("*.py") if p.stem != "__init__")
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # course order
TAG = re.compile(r"\((\d\d_[a-z0-9_]+)\)\.?\s*$")


def notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


CODE = {path.stem: notebook_code(path) for path in NOTEBOOKS}


def defined_in(module: str, name: str) -> tuple[str, str] | None:
    """Where ``helpers.module.name`` is defined: (module, name), following re-exports such as ``data.write_jsonl``."""
    obj = getattr(importlib.import_module(f"helpers.{module}"), name, None)
    if obj is None:
        return None
    if inspect.isfunction(obj) or inspect.isclass(obj):
        return obj.__module__.rsplit(".", 1)[-1], obj.__qualname__
    return module, name


def qualified_uses(text: str) -> set[tuple[str, str]]:
    """Every ``module.name`` of a helpers module in ``text``, resolved to where it is defined."""
    pairs = re.findall(r"\b(" + "|".join(MODULES) + r")\.(\w+)", text)
    return {where for module, name in pairs if (where := defined_in(module, name))}


def first_notebooks() -> dict[tuple[str, str], str]:
    first = {}
    for stem, text in CODE.items():
        for key in qualified_uses(text):
            first.setdefault(key, stem)
    return first


FIRST = first_notebooks()


def documented() -> list[tuple[str, str | None, str, str]]:
    """(module, class or None, function, first docstring paragraph) for every function and method in helpers/."""
    found = []
    for module in MODULES:
        tree = ast.parse((HELPERS / f"{module}.py").read_text(encoding="utf-8"))
        for node in tree.body:
            members = [(None, node)] if isinstance(node, ast.FunctionDef) else []
            if isinstance(node, ast.ClassDef):
                members = [(node.name, sub) for sub in node.body if isinstance(sub, ast.FunctionDef)]
            for cls, fn in members:
                paragraph = (ast.get_docstring(fn) or "").split("\n\n")[0].strip()
                found.append((module, cls, fn.name, paragraph))
    return found


def expected_tag(module: str, cls: str | None, name: str) -> str | None:
    if name.startswith("_"):
        return None
    if cls is None:
        return FIRST.get((module, name))
    attribute = re.compile(rf"\.{name}\b")  # a method or property: the first notebook that uses `.name`
    return next((stem for stem, text in CODE.items() if attribute.search(text)), None)


CASES = [case for case in documented()]


@pytest.mark.parametrize("module, cls, name, paragraph", CASES,
                         ids=[f"{m}.{c + '.' if c else ''}{n}" for m, c, n, _ in CASES])
def test_tag_is_the_first_notebook_that_calls_it(module, cls, name, paragraph):
    found = TAG.search(paragraph)
    tag = found.group(1) if found else None
    if tag is not None:
        assert tag in CODE, f"({tag}) names no notebook; notebooks are {sorted(CODE)}"
    want = expected_tag(module, cls, name)
    if cls is None and not name.startswith("_") or tag is not None:
        assert tag == want, (f"{module}.{name}: docstring tag ({tag}) but the first notebook that calls it is "
                             f"{want or 'none: write what uses it instead, e.g. (used by validation)'}")


def command_modules() -> set[str]:
    """Modules the Makefile or scripts/*.sh run as ``python -m helpers.X``: their functions serve that command."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in [REPO / "Makefile", *(REPO / "scripts").glob("*.sh")])
    return set(re.findall(r"-m helpers\.(\w+)", text)) & set(MODULES)


def helper_users(module: str, name: str) -> list[str]:
    """Other helpers modules and scripts/*.py that use ``module.name``."""
    users = []
    for other in MODULES:
        source = (HELPERS / f"{other}.py").read_text(encoding="utf-8")
        if other != module and (re.search(rf"\b{module}\.{name}\b", source)
                                or re.search(rf"from \.{module} import [^\n]*\b{name}\b", source)):
            users.append(other)
    users += [p.name for p in (REPO / "scripts").glob("*.py") if (module, name) in qualified_uses(p.read_text(encoding="utf-8"))]
    return users


PUBLIC = [(m, n) for m, c, n, _ in documented() if c is None and not n.startswith("_")]


@pytest.mark.parametrize("module, name", PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_every_public_helper_has_a_user(module, name):
    if (module, name) in FIRST or module in command_modules():
        return
    assert helper_users(module, name), (f"{module}.{name} is used by no notebook, script or other helper: "
                                        "delete it, or make it private (_name) if only its own module uses it")


def test_the_checks_see_re_exports_and_reject_a_stale_tag():
    assert FIRST[("formats", "write_jsonl")] == "01_self_cognition_data"
    assert FIRST[("validation", "validate_file")] == "01_self_cognition_data"
    assert TAG.search("Load it (00_environment).").group(1) not in CODE  # the old slug that matched no notebook
    assert {"course", "install", "lab", "preflight", "workspace"} <= command_modules()
