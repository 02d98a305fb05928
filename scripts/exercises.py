"""Exercises: learner copies generated from the solution notebooks, and a reset to the shipped files.

The notebooks in notebooks/ are the solution notebooks: each exercise is a ``### 练习 N`` cell followed by its
reference solution, cells tagged ``solution``. A learner copy (learner/, same file names) is the same notebook with
each solution code cell replaced by a ``# TODO`` scaffold (its first comment lines kept) and each written answer by an
empty answer cell, both tagged ``exercise``; every other cell, its id included, is unchanged.

Usage:
  python scripts/exercises.py learner [--check] [--force]   write learner/ (--check: only report stale copies)
  python scripts/exercises.py reset [PATH ...]              restore notebooks/, learner/, datasets/ (or PATHs) from git

Neither overwrites a learner's work silently: ``learner`` refuses a copy with uncommitted changes unless --force, and
both copy what they replace to the working folder's backups/ first.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]
from helpers import files, workspace  # noqa: E402
from clean_notebooks import clean_notebook, notebook_text  # noqa: E402  (the committed form of the solution notebooks)

SOLUTION, EXERCISE = "solution", "exercise"
LEARNER_NOTE = ("\n\n> **学员版**：由 `notebooks/` 里的同名笔记本生成（`make learner`）。练习下面的 `# TODO` 单元格留给你写，"
                "参考答案在 `notebooks/` 的同名笔记本里。")
TODO = "# TODO：在这里写你的代码，运行后对照上面的“你应该看到”。"
ANSWER = "**你的答案**：（双击这里写下你的答案；参考答案在 `notebooks/` 的同名笔记本里）"
RESET_PATHS = ("notebooks", "learner", "datasets")


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def scaffold(cell) -> nbformat.NotebookNode:
    """The learner's version of one solution cell: the same id, tagged ``exercise``."""
    if cell.cell_type == "code":
        lines = cell.source.splitlines()
        head = lines[:next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))]
        new = nbformat.v4.new_code_cell("\n".join([*head, TODO]))
    else:
        new = nbformat.v4.new_markdown_cell(ANSWER)
    new.id, new.metadata = cell.id, nbformat.from_dict({"tags": [EXERCISE]})
    return new


def learner_text(solution_path: Path) -> str:
    """The committed text of the learner copy of one solution notebook."""
    nb = clean_notebook(nbformat.read(solution_path, as_version=4))
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    first.source = first.source.rstrip() + LEARNER_NOTE
    nb.cells = [scaffold(c) if SOLUTION in tags(c) else c for c in nb.cells]
    return notebook_text(nb)


def solution_notebooks(repo: Path = REPO) -> list[Path]:
    return sorted((repo / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def stale_copies(repo: Path = REPO) -> list[str]:
    """Learner copies that are missing, out of date, or have no solution notebook any more."""
    expected = {p.name: learner_text(p) for p in solution_notebooks(repo)}
    present = {p.name for p in (repo / "learner").glob("*.ipynb")}
    stale = [name for name, text in expected.items()
             if not (repo / "learner" / name).is_file() or (repo / "learner" / name).read_text(encoding="utf-8") != text]
    return sorted(stale + [f"{name} (no notebooks/{name})" for name in present - set(expected)])


def changed_files(repo: Path, paths: list[str]) -> list[Path]:
    """Tracked files under ``paths`` that differ from the last commit (a learner's edits)."""
    run = subprocess.run(["git", "-C", str(repo), "diff", "--name-only", "HEAD", "--", *paths],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"git cannot compare {repo} with its last commit ({run.stderr.strip()}); "
                         "without git, download a fresh copy of the course instead")
    return [repo / line for line in run.stdout.splitlines() if line]


def backup(repo: Path, files: list[Path], backups_dir: Path) -> Path | None:
    """Copy ``files`` (keeping their paths relative to ``repo``) into a new ``backups_dir/<time>/``."""
    if not files:
        return None
    dest = backups_dir / time.strftime("%Y%m%d-%H%M%S")
    for path in files:
        if path.is_file():
            target = dest / path.relative_to(repo)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return dest


def write_learner_copies(repo: Path, backups_dir: Path, force: bool = False) -> list[Path]:
    """Write learner/ from notebooks/; a copy with uncommitted changes is replaced only with ``force`` (backed up)."""
    targets = {repo / "learner" / p.name: learner_text(p) for p in solution_notebooks(repo)}
    edited = [p for p in changed_files(repo, ["learner"]) if p in targets and p.read_text(encoding="utf-8") != targets[p]]
    if edited and not force:
        names = ", ".join(str(p.relative_to(repo)) for p in edited)
        raise SystemExit(f"{names}: has changes that are not committed (your exercise work?). "
                         "Commit or move them, or run again with --force (make learner FORCE=1) to replace them; "
                         "the replaced files are copied to the working folder's backups/ first.")
    saved = backup(repo, edited, backups_dir)
    if saved:
        print(f"copied your versions to {saved}")
    written = []
    for path, text in targets.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            written.append(files.atomic_write_text(path, text, overwrite=True))
    return written


def reset(repo: Path, backups_dir: Path, paths: list[str] = RESET_PATHS) -> list[Path]:
    """Restore ``paths`` to the last commit; what differed is copied to ``backups_dir`` first. New files are kept."""
    changed = changed_files(repo, list(paths))
    saved = backup(repo, changed, backups_dir)
    if changed:
        subprocess.run(["git", "-C", str(repo), "checkout", "HEAD", "--", *[str(p.relative_to(repo)) for p in changed]],
                       check=True)
        print(f"restored {len(changed)} file(s); your versions are in {saved}")
    else:
        print("nothing to restore: " + ", ".join(paths) + " are as shipped")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    learner = sub.add_parser("learner", help="write the learner copies into learner/")
    learner.add_argument("--check", action="store_true", help="only list the copies that are stale (exit status 1)")
    learner.add_argument("--force", action="store_true", help="replace copies that have uncommitted changes")
    again = sub.add_parser("reset", help="restore the shipped notebooks and data from git")
    again.add_argument("paths", nargs="*", default=list(RESET_PATHS))
    args = parser.parse_args(argv)
    if args.command == "learner" and args.check:
        stale = stale_copies()
        for name in stale:
            print(f"learner/{name}: stale (run: make learner)")
        return 1 if stale else 0
    backups_dir = workspace.get_workspace().backups
    if args.command == "learner":
        for path in write_learner_copies(REPO, backups_dir, args.force):
            print(f"wrote {path.relative_to(REPO)}")
    else:
        reset(REPO, backups_dir, args.paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
