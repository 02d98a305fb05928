"""Put the course notebooks in their committed form: nbformat 4.5 with cell ids, no outputs, the course kernel,
written exactly as JupyterLab saves them, so that opening a notebook changes nothing.

Usage: python scripts/clean_notebooks.py [--check] [NOTEBOOK ...]   (default: every notebooks/*.ipynb)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.corpus.words import generate_corpus_id

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNELSPEC = {"display_name": "Python 3 (xtuner-course)", "language": "python", "name": "xtuner-course"}
# What the course kernel reports and JupyterLab writes into every notebook it opens: anything else marks the notebook
# modified on open. The version is the Python that `make install` uses (README); another one shows the mark once.
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py", "mimetype": "text/x-python",
                 "name": "python", "nbconvert_exporter": "python", "pygments_lexer": "ipython3", "version": "3.11.7"}


def clean_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The committed form of a notebook: current nbformat, a cell id each, no outputs, course kernel, tags only."""
    nb = nbformat.v4.upgrade(nbformat.from_dict(nb))  # 4.4 -> 4.5 gives every cell an id
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO})
    for cell in nb.cells:
        cell.setdefault("id", generate_corpus_id())
        cell.metadata = nbformat.from_dict({"tags": cell.metadata["tags"]} if cell.metadata.get("tags") else {})
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """What ``nbformat.write`` (JupyterLab's save) writes for ``nb``, ending in a newline."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def clean_text(path: Path) -> str:
    """The committed text of a notebook file: what JupyterLab's save writes for its clean form."""
    return notebook_text(clean_notebook(nbformat.read(path, as_version=4)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that are not clean")
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    unclean = []
    for path in args.paths or sorted(NOTEBOOKS.glob("*.ipynb")):
        text = clean_text(path)
        if path.read_text(encoding="utf-8") != text:
            unclean.append(path)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    verb = "not clean (run python scripts/clean_notebooks.py)" if args.check else "cleaned"
    for path in unclean:
        print(f"{path}: {verb}")
    return 1 if args.check and unclean else 0


if __name__ == "__main__":
    sys.exit(main())
