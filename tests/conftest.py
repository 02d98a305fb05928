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
