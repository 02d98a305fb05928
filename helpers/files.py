"""Safe file writing: atomic writes that never clobber what the learner made."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class OutputExistsError(FileExistsError):
    """Raised when an output path exists and overwriting was not asked for."""


def check_writable(path: Path, overwrite: bool) -> Path:
    """Refuse to replace an existing ``path`` unless ``overwrite`` is true (01_self_cognition_data)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} already exists. Pass overwrite=True to replace it, or choose another output path."
        )
    return path


def atomic_write_text(path: Path, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename (used by course, formats, workspace, xconfig and scripts/exercises.py)."""
    path = check_writable(Path(path), overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def replace_dir(tmp_dir: Path, final_dir: Path, overwrite: bool = False) -> Path:
    """Move a finished ``tmp_dir`` into place as ``final_dir`` (used by convert)."""
    final_dir = check_writable(Path(final_dir), overwrite)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)
    return final_dir


def free_disk_gb(path: Path) -> float:
    """Free disk space in GB on the file system holding ``path`` (05_convert_merge)."""
    path = Path(path)
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 1e9


def dir_size_gb(path: Path) -> float:
    """Total size in GB of the files under ``path`` (05_convert_merge)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e9
