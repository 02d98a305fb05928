"""Shared fixtures. Notebooks run under nbmake with the cpu profile in one throw-away working folder: that run is
the course end to end, which tests/test_course.py checks after the last notebook (one execution serves both)."""

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NBMAKE_PROFILE = "cpu"


def pytest_configure(config):
    # nbmake's kernels inherit this environment: the cpu profile, and never the learner's ./workspace.
    os.environ["COURSE_PROFILE"] = NBMAKE_PROFILE
    os.environ["COURSE_WORKDIR"] = tempfile.mkdtemp(prefix="course-nbmake-")
    config.stash[_MPLBACKEND] = os.environ.get("MPLBACKEND")
    config.stash[_EXECUTED] = []
    if config.pluginmanager.hasplugin("nbmake"):
        _keep_executed_notebooks(Path(os.environ["COURSE_WORKDIR"]) / "reports" / "executed", config.stash[_EXECUTED])


_MPLBACKEND = pytest.StashKey()
_EXECUTED = pytest.StashKey()


def _keep_executed_notebooks(out_dir: Path, timings: list[dict]) -> None:
    """nbmake discards what it executed: keep each executed notebook in ``out_dir`` (as the course runner does) and
    its time and verdict in ``timings``, for the end-to-end checks."""
    import nbformat
    from nbmake.nb_run import NotebookRun

    execute = NotebookRun.execute

    def execute_and_keep(run):
        start = time.time()
        result = execute(run)
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(result.nb, str(out_dir / Path(run.filename).name))
        timings.append({"notebook": Path(run.filename).name, "seconds": round(time.time() - start, 1),
                        "passed": result.error is None})
        return result

    NotebookRun.execute = execute_and_keep


def pytest_collection_modifyitems(config, items):
    """Tests marked ``after_notebooks`` check the course that nbmake executes: they run after every notebook."""
    last = [item for item in items if item.get_closest_marker("after_notebooks")]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture
def nbmake_course(request) -> tuple[Path, list[dict]]:
    """The working folder nbmake's kernels use, and what nbmake executed there so far (in order)."""
    return Path(os.environ["COURSE_WORKDIR"]), request.config.stash[_EXECUTED]


def pytest_collection_finish(session):
    # Importing streamlit (helpers/web_demo.py, during collection) sets MPLBACKEND=Agg for this process; the kernels
    # that nbmake and JupyterLab start inherit it and would show "<Figure ...>" instead of plots.
    before = session.config.stash[_MPLBACKEND]
    if before is None:
        os.environ.pop("MPLBACKEND", None)
    else:
        os.environ["MPLBACKEND"] = before


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Qwen2 model folder, built once per test session."""
    from helpers import models

    return models.build_tiny_model(tmp_path_factory.mktemp("models") / models.TINY_DIR)


@pytest.fixture
def ws(tmp_path):
    """A fresh working folder."""
    from helpers import workspace

    return workspace.get_workspace(tmp_path / "workspace")


@pytest.fixture
def fake_root(tmp_path, monkeypatch) -> Path:
    """A stand-in for ``/`` where a test builds a platform's folders (never the real /root)."""
    from helpers import platforms

    root = tmp_path / "fsroot"
    root.mkdir()
    monkeypatch.setenv(platforms.ROOT_VAR, str(root))
    return root


def _reference_token_lengths(records: list[dict], tokenizer, template_name: str) -> list[int]:
    """The slow reference: xtuner's own map functions and ``encode_fn``, one record at a time."""
    from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    apply_template = template_map_fn_factory(template=PROMPT_TEMPLATE[template_name])
    lengths = []
    for record in records:
        example = json.loads(json.dumps(record))  # xtuner's map functions edit records in place
        example = openai_map_fn(example) if "messages" in example else example
        example.update(apply_template(example))
        lengths.append(len(encode_fn(example, tokenizer, max_length=10**9)["input_ids"]))
    return lengths


@pytest.fixture
def reference_token_lengths():
    """What ``validation.token_lengths`` must equal: xtuner's slow per-record encoding."""
    return _reference_token_lengths
