"""The committed notebooks follow the house template and are clean."""

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_numbering_is_two_digits_unique_and_ordered():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name) for p in NOTEBOOKS), IDS
    assert numbers == sorted(set(numbers)) and numbers[0] == "00"
    assert {"00", "01", "03", "04", "05", "06"} <= set(numbers)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_clean(path):
    book = json.loads(path.read_text(encoding="utf-8"))
    for cell in book["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, source(cell)[:80]
    assert set(book["metadata"]) <= {"kernelspec", "language_info"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_template_sections(path):
    all_cells = cells(path)
    markdown = [source(c) for c in all_cells if c["cell_type"] == "markdown"]
    assert markdown[0].startswith(f"# {path.name[:2]} · "), markdown[0][:40]
    assert "预计用时" in markdown[0] and "前置" in markdown[0]
    headings = [line for text in markdown for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## 学习目标"
    assert "## 1. " in "\n".join(headings)
    assert "## 小结" in headings and "## 练习" in headings
    assert headings.index("## 练习") == len(headings) - 1  # nothing after the exercises


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exactly_one_parameters_cell_after_the_setup_cell(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    assert code.index(tagged[0]) == 1, "the parameters cell follows the one setup cell"
    assert source(code[0]).startswith("from helpers import ")
    body = ast.parse(source(tagged[0])).body
    assert body and all(isinstance(node, ast.Assign) for node in body), "parameters cell holds assignments only"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_code_is_valid_and_uses_helpers_qualified(path):
    helpers = importlib.import_module("helpers")
    for cell in cells(path):
        if cell["cell_type"] != "code":
            continue
        text = source(cell)
        ast.parse(text)
        assert "!pip" not in text and "sys.path" not in text
        for module, name in re.findall(r"\b(workspace|profiles|models|data|xconfig|training|convert|chat|cli|env|files|estimate|preflight|monitor|formats|validation)\.([a-z_]\w*)\(", text):
            mod = importlib.import_module(f"helpers.{module}")
            assert hasattr(mod, name), f"{path.name}: helpers.{module}.{name} does not exist"
    assert helpers is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_section_ends_with_a_check(path):
    all_cells = cells(path)
    starts = [i for i, c in enumerate(all_cells) if c["cell_type"] == "markdown" and re.match(r"## \d+\. ", source(c))]
    ends = starts[1:] + [next(i for i, c in enumerate(all_cells) if source(c).startswith("## 小结"))]
    for start, end in zip(starts, ends):
        section = [source(c) for c in all_cells[start:end] if c["cell_type"] == "code"]
        if section:
            assert "assert " in section[-1] or "# 检查" in section[-1], f"{path.name}: section at cell {start}"
