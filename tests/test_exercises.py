"""Exercises: each has a "what you should see" line and a reference solution; the learner copies are generated from
the solution notebooks, are up to date, and differ only in the exercise cells; regenerating and resetting never lose
a learner's edits. (The solutions run under nbmake with the cpu profile; a learner copy runs the same cells, its exercise cells being
comments, so that run covers `make course` too.)"""

import ast
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.name for p in SOLUTIONS]


def exercises_script():
    spec = importlib.util.spec_from_file_location("exercises", REPO / "scripts" / "exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_learner_copies_are_up_to_date():
    assert exercises_script().stale_copies() == [], "learner/ is stale: run make learner"
    assert [p.name for p in sorted((REPO / "learner").glob("*.ipynb"))] == IDS


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_every_exercise_says_what_you_should_see_and_has_a_checked_solution(path):
    all_cells = cells(path)
    start = next(i for i, c in enumerate(all_cells) if text(c).startswith("## 练习"))
    assert not [c for c in all_cells[:start] if "solution" in tags(c)], "a solution cell before ## 练习"
    numbers, solutions = [], {}
    for cell in all_cells[start + 1:]:
        heading = re.match(r"### 练习 (\d+) (★+) ", text(cell))
        if heading:
            assert cell["cell_type"] == "markdown" and "**你应该看到**" in text(cell), text(cell)[:60]
            numbers.append(int(heading.group(1)))
            continue
        assert "solution" in tags(cell) and numbers, f"{path.name}: an untagged cell among the exercises: {text(cell)[:60]}"
        solutions.setdefault(numbers[-1], []).append(cell)
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3
    assert sorted(solutions) == numbers, f"exercises without a solution: {set(numbers) - set(solutions)}"
    for number, found in solutions.items():
        for cell in found:
            if cell["cell_type"] == "code":
                code = text(cell)
                assert code.startswith(f"# 练习 {number}："), code[:40]
                assert "# 检查" in code and "assert " in code, f"exercise {number}'s solution checks nothing"
            else:
                assert text(cell).startswith("**参考答案**") and "不在测试里运行" in text(cell), text(cell)[:60]


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_the_learner_copy_differs_only_in_the_exercise_cells(path):
    solution, learner = cells(path), cells(REPO / "learner" / path.name)
    assert [c["id"] for c in solution] == [c["id"] for c in learner]
    assert "学员版" in text(learner[0]) and text(learner[0]).startswith(text(solution[0]).rstrip())
    for mine, theirs in list(zip(solution, learner))[1:]:
        if "solution" not in tags(mine):
            assert mine == theirs
            continue
        assert tags(theirs) == ["exercise"] and theirs["cell_type"] == mine["cell_type"]
        scaffold = text(theirs)
        assert "assert" not in scaffold and text(mine) not in scaffold
        if mine["cell_type"] == "code":  # comments only: running it is a no-op, so the copy runs to its end
            assert "# TODO" in scaffold and ast.parse(scaffold).body == []
            assert scaffold.splitlines()[0] == text(mine).splitlines()[0]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def course_repo(tmp_path) -> Path:
    """A small git checkout: one solution notebook, its learner copy and one dataset, committed."""
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(SOLUTIONS[0], repo / "notebooks")
    shutil.copytree(REPO / "datasets", repo / "datasets", ignore=lambda d, names: [n for n in names if n != "eval_questions.json"])
    (repo / "learner").mkdir()
    (repo / "learner" / SOLUTIONS[0].name).write_text(exercises_script().learner_text(SOLUTIONS[0]), encoding="utf-8")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "shipped")
    return repo


def test_regenerating_never_replaces_a_learners_work_without_force(course_repo, tmp_path):
    module, copy = exercises_script(), course_repo / "learner" / SOLUTIONS[0].name
    shipped = copy.read_text(encoding="utf-8")
    assert module.write_learner_copies(course_repo, tmp_path / "backups") == []  # up to date: nothing written
    work = shipped.replace("# TODO：在这里写你的代码", "print('my answer')  # TODO：在这里写你的代码", 1)
    copy.write_text(work, encoding="utf-8")
    with pytest.raises(SystemExit, match=r"learner/00_.*not committed.*--force"):
        module.write_learner_copies(course_repo, tmp_path / "backups")
    assert copy.read_text(encoding="utf-8") == work
    assert module.write_learner_copies(course_repo, tmp_path / "backups", force=True) == [copy]
    assert copy.read_text(encoding="utf-8") == shipped
    [saved] = (tmp_path / "backups").glob(f"*/learner/{copy.name}")
    assert saved.read_text(encoding="utf-8") == work


def test_reset_restores_the_shipped_files_and_keeps_a_copy_of_the_edits(course_repo, tmp_path):
    module = exercises_script()
    data, notebook = course_repo / "datasets" / "eval_questions.json", course_repo / "notebooks" / SOLUTIONS[0].name
    shipped_data, shipped_notebook = data.read_text(encoding="utf-8"), notebook.read_text(encoding="utf-8")
    data.write_text(shipped_data.replace("]", ', {"kind": "identity", "question": "新问题"}]', 1)[:-1], encoding="utf-8")
    notebook.write_text("{}", encoding="utf-8")
    (course_repo / "datasets" / "mine.jsonl").write_text("{}\n", encoding="utf-8")  # a learner's own file
    assert sorted(p.name for p in module.reset(course_repo, tmp_path / "backups")) == [notebook.name, data.name]
    assert data.read_text(encoding="utf-8") == shipped_data and notebook.read_text(encoding="utf-8") == shipped_notebook
    assert (course_repo / "datasets" / "mine.jsonl").is_file(), "reset deleted a file the learner made"
    [backup] = (tmp_path / "backups").iterdir()
    assert "新问题" in (backup / "datasets" / "eval_questions.json").read_text(encoding="utf-8")
    assert (backup / "notebooks" / notebook.name).read_text(encoding="utf-8") == "{}"
    assert module.reset(course_repo, tmp_path / "backups") == []


def test_reset_outside_git_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="without git, download a fresh copy"):
        exercises_script().reset(tmp_path, tmp_path / "backups")
