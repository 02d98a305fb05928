"""Where the course runs: AutoDL, InternStudio or elsewhere, and the folders each platform provides.

Standard library only: ``scripts/install.sh`` uses it before anything is installed.
``$COURSE_PLATFORM_ROOT`` stands in for ``/`` (tests simulate a platform in a temporary folder, never in the real ``/root``).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_VAR = "COURSE_PLATFORM_ROOT"
WORKDIR_NAME = "xtuner-course-workspace"


def _fs_root() -> Path:
    """``/``, or ``$COURSE_PLATFORM_ROOT`` when a test simulates a platform."""
    return Path(os.environ.get(ROOT_VAR) or "/")


def autodl_data_disk() -> Path:
    """AutoDL's data disk, ``/root/autodl-tmp`` (the system disk is small) (used by preflight)."""
    return _fs_root() / "root" / "autodl-tmp"


def internstudio_models() -> Path:
    """InternStudio's shared model folder, ``/root/share/new_models`` (used by models, preflight)."""
    return _fs_root() / "root" / "share" / "new_models"


def detect_platform() -> str:
    """``internstudio``, ``autodl`` or ``other``, from the folders each platform provides (00_environment_and_base_model)."""
    if internstudio_models().is_dir():
        return "internstudio"
    if autodl_data_disk().is_dir():
        return "autodl"
    return "other"


def on_data_disk(path: Path) -> bool:
    """Whether ``path`` lies on AutoDL's data disk."""
    disk = autodl_data_disk().resolve()
    path = Path(path).resolve()
    return path == disk or disk in path.parents


def default_workdir(repo_root: Path) -> Path:
    """``REPO/workspace``; on AutoDL, when the repo is on the system disk, a folder on the data disk instead."""
    if detect_platform() == "autodl" and not on_data_disk(repo_root):
        return autodl_data_disk() / WORKDIR_NAME
    return Path(repo_root) / "workspace"


def _cache_dirs() -> dict[str, Path]:
    """Download caches to move off AutoDL's small system disk (empty elsewhere)."""
    if detect_platform() != "autodl":
        return {}
    cache = autodl_data_disk() / "cache"
    return {"MODELSCOPE_CACHE": cache / "modelscope", "HF_HOME": cache / "huggingface", "PIP_CACHE_DIR": cache / "pip"}


def apply_cache_dirs() -> dict[str, str]:
    """Set the AutoDL cache variables that the learner has not set; returns the ones it set (used by install, workspace)."""
    applied = {}
    for name, path in _cache_dirs().items():
        if not os.environ.get(name):
            os.environ[name] = applied[name] = str(path)
    return applied


def model_download_dir(models_dir: Path) -> Path:
    """Where ModelScope downloads go: the data disk on AutoDL, else the working folder's ``models/``."""
    return autodl_data_disk() / "models" if detect_platform() == "autodl" else Path(models_dir)
