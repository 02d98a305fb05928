"""The course runner, and the embedded cpu profile end to end (the acceptance run: the course nbmake executes)."""

import json
from pathlib import Path

import pytest
from conftest import NBMAKE_PROFILE
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
    assert names == sorted(names) and names[0] == "00" and names[-1] == "10"


@pytest.fixture
def cpu_course(nbmake_course, tmp_path) -> tuple[Path, Path]:
    """The cpu course, executed once: in `make test` the notebooks nbmake just ran (the solution notebooks, on the cpu
    profile, in one working folder); run alone (`pytest -m slow`), the same notebooks with papermill here.

    The learner copies that `make course` runs are these notebooks with each solution cell replaced by comments
    (tests/test_exercises.py checks that), so this run covers them too."""
    root, executed = nbmake_course
    names = [p.name for p in course.notebook_paths(solutions=True)]
    if [t["notebook"] for t in executed] == names:
        failed = [t["notebook"] for t in executed if not t["passed"]]
        assert not failed, f"nbmake failed on {failed} (its report above says where)"
        return root, course.write_report(root, NBMAKE_PROFILE, [{k: t[k] for k in ("notebook", "seconds")} for t in executed])
    assert executed == [], f"nbmake ran only {[t['notebook'] for t in executed]} of the notebooks"
    return tmp_path / "ws", course.run_course(NBMAKE_PROFILE, str(tmp_path / "ws"), solutions=True)


@pytest.mark.slow
@pytest.mark.after_notebooks
def test_cpu_profile_end_to_end(cpu_course):
    """SmolLM2 from the embedded package, the whole course on the cpu profile: trained identity appears, general
    knowledge survives. (With max_iters=40 the mixed model lost 4 of 22 probe answers, past 07's margin.)"""
    root, report = cpu_course
    reports = root / "reports"
    print(report.read_text(encoding="utf-8"))
    assert sorted(p.name for p in (reports / "executed").iterdir()) == [p.name for p in course.notebook_paths()]
    for executed in sorted((reports / "executed").iterdir()):
        assert stray_outputs(json.loads(executed.read_text(encoding="utf-8"))) == [], executed.name
    training = json.loads((reports / "training_summary.json").read_text())
    assert training["iterations"] == 60 and training["final_loss"] < 0.5 * training["first_loss"]
    rows = json.loads((reports / "comparison.json").read_text(encoding="utf-8"))
    trained = rows[0]
    assert "小智" in trained["after"] and "小智" not in trained["before"]
    france = next(r for r in rows if "France" in r["question"])
    assert "Paris" in france["before"] and "Paris" in france["after"]
    text = report.read_text(encoding="utf-8")
    assert "Before and after fine-tuning" in text and "final_loss" in text
    # 07: the identity generalises to held-out paraphrases; the mixed-in general data keeps the general probe
    # (07's margin, 0.15), while the run without it forgets; the benchmark is scored for both models
    evaluation = json.loads((reports / "evaluation.json").read_text(encoding="utf-8"))
    held, probe = evaluation["heldout"], evaluation["probe"]
    assert held["tuned"]["contains"] >= held["base"]["contains"] + 0.5 and held["no_mix"]["contains"] >= 0.5
    assert probe["base"] >= 0.6 and probe["tuned"] >= probe["base"] - 0.15 and probe["no_mix"] < probe["tuned"] - 0.2
    assert evaluation["benchmark"]["overall"]["questions"] == 30 and {"base", "tuned"} <= set(evaluation["benchmark"]["overall"])
    assert "## Evaluation (notebook 07)" in text and (reports / "evaluation.png").is_file()
    # 08: the f16 GGUF answers as transformers does; quantised files are smaller and faster; the report shows them
    gguf = {row["format"]: row for row in json.loads((reports / "gguf_table.json").read_text(encoding="utf-8"))}
    assert list(gguf) == ["transformers fp32", "GGUF f16", "GGUF q8_0", "GGUF q4_0"]
    assert int(gguf["GGUF f16"]["same_answers"].split("/")[0]) >= 4
    assert gguf["GGUF q4_0"]["size_mb"] < gguf["GGUF q8_0"]["size_mb"] < gguf["GGUF f16"]["size_mb"]
    assert gguf["GGUF q4_0"]["tokens_per_s"] > gguf["transformers fp32"]["tokens_per_s"]
    assert "## Serving (notebook 08)" in text
    # 09: continued pre-training lowers the held-out domain text's perplexity and makes the domain's answers likelier
    pretrain = json.loads((reports / "pretrain.json").read_text(encoding="utf-8"))
    assert pretrain["perplexity_drop"] >= 0.3 and pretrain["iterations"] == 20
    assert all(pretrain["after"][k] > v for k, v in pretrain["before"].items() if k.startswith("log p"))
    assert "## Continued pre-training (notebook 09)" in text
    # 10: DPO makes the model prefer the identity answer over its own on held-out pairs (questions and answers unseen)
    preference = json.loads((reports / "preference.json").read_text(encoding="utf-8"))
    held = {when: preference[when]["identity"]["accuracy"] for when in ("before", "after")}  # measured: 0.50 -> 1.00
    assert held["after"] >= max(0.75, held["before"] + 0.25)
    assert preference["after"]["identity"]["implicit_reward_accuracy"] >= 0.9 and preference["iterations"] == 20
    assert "## Preference tuning (notebook 10)" in text


def test_report_links_the_evaluation_with_one_row_per_model(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    summary = {"eval_set": "held-out identity paraphrases (01)",
               "heldout": {"base": {"exact": 0.0, "contains": 0.0, "rouge_l": 0.1},
                           "tuned": {"exact": 0.25, "contains": 1.0, "rouge_l": 0.8},
                           "no_mix": {"exact": 0.5, "contains": 1.0, "rouge_l": 0.9}},
               "benchmark": {"overall": {"base": 0.3, "tuned": 0.35, "questions": 20, "chance": 0.25}},
               "probe": {"base": 0.9, "tuned": 0.85, "no_mix": 0.2}}
    (reports / "evaluation.json").write_text(json.dumps(summary), encoding="utf-8")
    text = course.render_report(tmp_path, "cpu", [{"notebook": "07_evaluate.ipynb", "seconds": 1.0}])
    assert "[evaluation.md](evaluation.md)" in text and "chance level 0.25" in text
    rows = [line for line in text.splitlines() if line.startswith(("| base", "| tuned", "| no_mix"))]
    assert rows == ["| base | 0.0 | 0.0 | 0.1 | 0.3 | 0.9 |", "| tuned | 0.25 | 1.0 | 0.8 | 0.35 | 0.85 |",
                    "| no_mix | 0.5 | 1.0 | 0.9 |  | 0.2 |"]


def test_report_shows_the_gguf_table_and_the_screenshot(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    rows = [{"format": "transformers fp32", "size_mb": 280.4, "load_s": 0.7, "tokens_per_s": 12.2, "same_answers": "5/5"},
            {"format": "GGUF q4_0", "size_mb": 87.5, "load_s": 0.2, "tokens_per_s": 65.0, "same_answers": "0/5"}]
    (reports / "gguf_table.json").write_text(json.dumps(rows), encoding="utf-8")
    text = course.render_report(tmp_path, "cpu", [])
    assert "## Serving (notebook 08)" in text and "| GGUF q4_0 | 87.5 | 0.2 | 65.0 | 0/5 |" in text
    assert "web_demo.png" not in text
    (reports / "web_demo.png").write_bytes(b"png")
    assert "![web demo](web_demo.png)" in course.render_report(tmp_path, "cpu", [])


def test_report_shows_the_pretraining_scores(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    from helpers import evaluation

    evaluation.write_pretrain_report(reports, {"heldout_perplexity": 40.0, "log p(桂花糕 | 小吃是)": -25.0},
                                     {"heldout_perplexity": 14.0, "log p(桂花糕 | 小吃是)": -11.5}, iterations=20)
    text = course.render_report(tmp_path, "cpu", [])
    assert "## Continued pre-training (notebook 09)" in text and "20 iterations; held-out perplexity 65% lower" in text
    assert "| heldout_perplexity | 40.0 | 14.0 |" in text and "| log p(桂花糕 \\| 小吃是) | -25.0 | -11.5 |" in text


def test_report_shows_the_preference_accuracy(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    from helpers import evaluation

    before = {"identity": {"accuracy": 0.0, "sum_accuracy": 0.0}, "general": {"accuracy": 0.75, "sum_accuracy": 0.5}}
    after = {"identity": {"accuracy": 0.917, "sum_accuracy": 0.5}, "general": {"accuracy": 0.75, "sum_accuracy": 0.5}}
    evaluation.write_preference_report(reports, before, after, method="DPO", iterations=20)
    text = course.render_report(tmp_path, "cpu", [])
    assert "## Preference tuning (notebook 10)" in text and "DPO with LoRA for 20 iterations" in text
    assert "| identity | 0.0 | 0.92 |" in text and "| general | 0.75 | 0.75 |" in text
