"""The course runner, and the embedded cpu profile end to end (the acceptance run, with fewer steps)."""

import json

import pytest
from notebook_outputs import stray_outputs

from helpers import course


def test_md_table_escapes_cells():
    table = course.md_table([{"q": "a|b", "a": "line\nbreak"}])
    assert table.splitlines() == ["| q | a |", "|---|---|", "| a\\|b | line break |"]


def test_parse_set_reads_json_values():
    assert course._parse_set(["max_iters=20", "system=hi", "require_identity=false"]) == {
        "max_iters": 20, "system": "hi", "require_identity": False}
    with pytest.raises(SystemExit):
        course._parse_set(["oops"])


def test_notebooks_in_learner_order():
    names = [p.name[:2] for p in course.notebook_paths()]
    assert names == sorted(names) and names[0] == "00" and names[-1] == "06"


@pytest.mark.slow
def test_cpu_profile_end_to_end(tmp_path):
    """SmolLM2 from the embedded package: trained identity appears, general knowledge survives."""
    report = course.run_course("cpu", str(tmp_path / "ws"), {"max_iters": 40})
    reports = tmp_path / "ws" / "reports"
    assert sorted(p.name for p in (reports / "executed").iterdir()) == [p.name for p in course.notebook_paths()]
    for executed in sorted((reports / "executed").iterdir()):
        assert stray_outputs(json.loads(executed.read_text(encoding="utf-8"))) == [], executed.name
    training = json.loads((reports / "training_summary.json").read_text())
    assert training["iterations"] == 40 and training["final_loss"] < 0.5 * training["first_loss"]
    rows = json.loads((reports / "comparison.json").read_text(encoding="utf-8"))
    trained = rows[0]
    assert "小智" in trained["after"] and "小智" not in trained["before"]
    france = next(r for r in rows if "France" in r["question"])
    assert "Paris" in france["before"] and "Paris" in france["after"]
    text = report.read_text(encoding="utf-8")
    assert "Before and after fine-tuning" in text and "final_loss" in text
