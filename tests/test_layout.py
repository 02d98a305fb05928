"""Repository layout and the promises the README makes."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_top_level_layout():
    for name in ["notebooks", "learner", "helpers", "datasets", "images", "tests", "environment.yml", "README.md",
                 "pyproject.toml", "Makefile", ".ci/run"]:
        assert (REPO / name).exists(), name


def test_datasets_folder_does_not_shadow_the_library():
    assert not (REPO / "datasets" / "__init__.py").exists()
    out = subprocess.run([sys.executable, "-c", "import datasets; print(datasets.__file__, datasets.load_dataset)"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "site-packages" in out and "load_dataset" in out


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text()
    first_blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)[:2]
    assert any("make course" in b for b in first_blocks) and any("make test" in b for b in first_blocks)
    assert re.search(r"^make test$", ci, flags=re.M)


def test_pins_live_in_one_place_and_conda_cannot_pull_a_torch():
    """helpers/install.py holds the stack's pins; environment.yml has only Python, pip and make (no torch via xtuner)."""
    from helpers import env, install

    assert env.pinned()["xtuner"] == install.STACK["xtuner"] == "0.2.0"
    assert not re.search(r"[a-z]==\d", (REPO / "scripts" / "install.sh").read_text())
    environment = (REPO / "environment.yml").read_text()
    dependencies = environment.split("dependencies:")[1]
    assert "python=3.11" in dependencies and "torch" not in dependencies and "xtuner" not in dependencies


def test_shipped_data_files_are_valid_json():
    import json

    for path in (REPO / "datasets").glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))


def test_relative_links_and_images_resolve():
    import json

    docs = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    texts = [(p, p.read_text(encoding="utf-8")) for p in docs]
    for nb in [*(REPO / "notebooks").glob("*.ipynb"), *(REPO / "learner").glob("*.ipynb")]:
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        texts.append((nb, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")))
    for path, text in texts:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{path.name}: broken link {target}"
