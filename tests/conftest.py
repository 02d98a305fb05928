"""Shared fixtures. Notebooks run under nbmake with the tiny profile in a throw-away working folder."""

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    # nbmake's kernels inherit this environment: the tiny profile, and never the learner's ./workspace.
    os.environ["COURSE_PROFILE"] = "tiny"
    os.environ["COURSE_WORKDIR"] = tempfile.mkdtemp(prefix="course-nbmake-")


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
