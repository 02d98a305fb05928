"""Notebook 02 runs top to bottom on a learner's real files: a sheet with a title row above the header, a GBK CSV."""

import nbformat
import openpyxl
import pytest

from helpers import course, formats, workspace

NOTEBOOK = workspace.NOTEBOOKS_DIR / "02_your_own_data.ipynb"
QA = [(f"第 {i} 轮面试前要准备什么？", f"先复盘第 {i - 1} 轮的问题，再针对岗位练习。") for i in range(1, 13)]


def titled_sheet(path):
    """As many Chinese office sheets are: a title row and a blank row above the header, the columns named differently."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "汇总"
    sheet.append(["职业咨询问答汇总（2025 年）"])
    sheet.append([])
    sheet.append(["序号", "提问", "答复"])
    for number, (question, answer) in enumerate(QA, start=1):
        sheet.append([number, question, answer])
    sheet.append([99, "这一行没有答复", None])
    book.save(path)


def gbk_csv(path):
    """A CSV as Excel saves it on Chinese Windows: GBK, CRLF, no BOM."""
    text = "提问,答复\r\n" + "".join(f"{q},{a}\r\n" for q, a in QA)
    path.write_bytes(text.encode("gbk"))


@pytest.mark.parametrize("name, make, sheet, shown", [
    ("titled.xlsx", titled_sheet, "汇总", "表头在第 3 行"),
    ("excel_gbk.csv", gbk_csv, None, "表头在第 1 行；检测到的编码：GBK/GB18030"),
])
def test_notebook_02_runs_on_a_learners_own_file(tmp_path, tiny_model, name, make, sheet, shown):
    ws = workspace.get_workspace(tmp_path / "ws")
    ws.update_state(profile="tiny", base_model=tiny_model)  # what notebook 00 records
    source = tmp_path / name
    make(source)
    out = tmp_path / "executed"
    out.mkdir()
    course.run_notebook(NOTEBOOK, out, {"workdir": str(ws.root), "profile_name": "tiny", "input_file": str(source),
                                        "sheet": sheet, "question_column": "提问", "answer_column": "答复"})
    executed = nbformat.read(out / NOTEBOOK.name, as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert shown in printed
    train = formats.read_jsonl(ws.data / "own_data_train.jsonl")
    held_out = formats.read_jsonl(ws.data / "own_data_eval.jsonl")
    assert sorted(r["conversation"][0]["input"] for r in train + held_out) == sorted(q for q, _ in QA)
    assert ws.read_state()["own_data_file"] == str(ws.data / "own_data_train.jsonl")
