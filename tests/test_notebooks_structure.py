"""The committed notebooks follow the house template and are clean."""

import ast
import importlib
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from notebook_outputs import side_effect_cells, stray_outputs

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
COURSE_KERNEL = {"display_name": "Python 3 (xtuner-course)", "language": "python", "name": "xtuner-course"}
# Emoji (presentation) code points: without an emoji font, as on many cloud images, they render as boxes.
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2B00-\u2BFF\u2700-\u27BF\uFE0F]")


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_numbering_is_two_digits_unique_and_ordered():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name) for p in NOTEBOOKS), IDS
    assert numbers == sorted(set(numbers)) and numbers[0] == "00"
    assert {"00", "01", "03", "04", "05", "06", "07", "08", "09", "10"} <= set(numbers)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_clean(path):
    book = json.loads(path.read_text(encoding="utf-8"))
    for cell in book["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, source(cell)[:80]
    assert set(book["metadata"]) <= {"kernelspec", "language_info"}


def cleaner():
    spec = importlib.util.spec_from_file_location("clean_notebooks", REPO / "scripts" / "clean_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_in_the_form_jupyterlab_saves(path):
    """nbformat 4.5 with cell ids and the course kernel, serialised as JupyterLab saves: opening it changes nothing."""
    book = json.loads(path.read_text(encoding="utf-8"))
    assert (book["nbformat"], book["nbformat_minor"]) == (4, 5)
    ids = [cell.get("id") for cell in book["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), "every cell needs its own id"
    assert book["metadata"]["kernelspec"] == COURSE_KERNEL
    nbformat.validate(nbformat.reads(path.read_text(encoding="utf-8"), as_version=nbformat.NO_CONVERT))
    assert path.read_text(encoding="utf-8") == cleaner().clean_text(path), "run: python scripts/clean_notebooks.py"


def test_cleaning_upgrades_an_old_notebook_and_keeps_ids(tmp_path):
    old = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=3, outputs=[
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)])])
    old.nbformat_minor = 4
    del old.cells[0]["id"]
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(old), encoding="utf-8")
    assert cleaner().main([str(path)]) == 0 and cleaner().main(["--check", str(path)]) == 0
    book = json.loads(path.read_text(encoding="utf-8"))
    assert book["nbformat_minor"] == 5 and book["metadata"]["kernelspec"] == COURSE_KERNEL
    assert book["cells"][0]["outputs"] == [] and book["cells"][0]["execution_count"] is None
    first_id = book["cells"][0]["id"]
    cleaner().main([str(path)])
    assert json.loads(path.read_text(encoding="utf-8"))["cells"][0]["id"] == first_id


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_cell_ends_with_a_side_effect_value(path):
    """A cell ending in ``path.write_text(...)`` or ``ws.update_state(...)`` shows a number or the whole state."""
    assert side_effect_cells(json.loads(path.read_text(encoding="utf-8"))) == {}


def test_stray_outputs_are_found_in_an_executed_notebook():
    def cell(code, text):
        return nbformat.v4.new_code_cell(code, outputs=[nbformat.v4.new_output("execute_result", {"text/plain": text})])

    book = nbformat.v4.new_notebook(cells=[
        cell('path.write_text("x")', "1"), cell("len(rows)", "147"), cell("ws.read_state()", "{'profile': 'tiny', 'base_model': 'm'}"),
        cell("summary", "{'iterations': 150}"), cell("pd.DataFrame(rows)", "   a\n0  1")])
    assert [line.split(" shows")[0].split(" dumps")[0] for line in stray_outputs(book)] == ["cell 0", "cell 1", "cell 2"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_text_has_no_emoji(path):
    """Difficulty marks and the like are plain text (★), which every font has."""
    found = EMOJI.findall(path.read_text(encoding="utf-8"))
    assert not found, f"emoji {found} render as boxes without an emoji font; use ★ or plain words"


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
        for module, name in re.findall(r"\b(workspace|profiles|models|data|xconfig|training|convert|chat|cli|env|files|estimate|preflight|monitor|formats|validation|evaluation|serving|llamacpp|deploy|course)\.([a-z_]\w*)\(", text):
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
