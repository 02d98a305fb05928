"""The notebooks run in a JupyterLab started elsewhere (a platform's own) by choosing the course's kernel."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import install

REPO = Path(__file__).resolve().parent.parent
NBCONVERT = "nbconvert==7.17.2"  # what the course's own environment has


def other_python() -> str | None:
    """A Python that is not the course's: another version from pyenv, else the base interpreter."""
    for candidate in [*Path.home().glob(".pyenv/versions/3.12.*/bin/python3.12"), Path(sys.base_prefix) / "bin" / "python3"]:
        if candidate.exists():
            return str(candidate)
    return None


def test_notebook_00_runs_from_another_pythons_jupyter_with_the_course_kernel(tmp_path):
    python = other_python()
    if python is None:
        pytest.skip("no second Python on this machine")
    jupyter_data = tmp_path / "jupyter-data"
    # The tiny profile: what is tested is which Python the kernel runs, not the model (00 builds a tiny one in seconds).
    env = {**os.environ, "JUPYTER_DATA_DIR": str(jupyter_data), "COURSE_WORKDIR": str(tmp_path / "ws"),
           "COURSE_PROFILE": "tiny"}
    env.pop("VIRTUAL_ENV", None)
    # What `make install` does for the learner's own JupyterLab: a user-level kernel for this environment.
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", install.KERNEL_NAME,
                    "--display-name", install.KERNEL_DISPLAY_NAME], env=env, check=True, capture_output=True)
    other = tmp_path / "platform-jupyter"
    subprocess.run([python, "-m", "venv", str(other)], check=True)
    subprocess.run([other / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", NBCONVERT],
                   check=True, env=env)
    proc = subprocess.run([other / "bin" / "jupyter", "nbconvert", "--to", "notebook", "--execute",
                           f"--ExecutePreprocessor.kernel_name={install.KERNEL_NAME}",
                           "--ExecutePreprocessor.timeout=600", "--output-dir", str(tmp_path / "out"),
                           str(REPO / "notebooks" / "00_environment_and_base_model.ipynb")],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    executed = json.loads((tmp_path / "out" / "00_environment_and_base_model.ipynb").read_text(encoding="utf-8"))
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert outputs and not [o for o in outputs if o["output_type"] == "error"]
    # The kernel ran the course's Python (3.11 here), not the other one, which cannot even import the course.
    assert executed["metadata"]["language_info"]["version"] == platform.python_version()
    bare = subprocess.run([other / "bin" / "python", "-c", "import xtuner"], capture_output=True, cwd=tmp_path)
    assert bare.returncode != 0
