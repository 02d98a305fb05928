"""The working folder: one place, with a fixed layout, for everything a run produces."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from . import files, platforms

ENV_VAR = "COURSE_WORKDIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"  # the solution notebooks
LEARNER_DIR = REPO_ROOT / "learner"  # the learner copies generated from them (scripts/exercises.py)
LAYOUT = {
    "models": "base models prepared for the course (unpacked or built once, then reused)",
    "data": "training data written by notebook 01 (JSONL)",
    "configs": "XTuner configs copied and edited by notebook 03",
    "work_dirs": "xtuner train output: logs, checkpoints (iter_N.pth), vis_data",
    "hf_adapter": "the LoRA adapter converted by xtuner convert pth_to_hf",
    "merged": "base model + adapter merged by xtuner convert merge",
    "reports": "answers, comparisons, plots, executed notebooks",
    "gguf": "GGUF files for llama.cpp and Ollama, written by notebook 08",
    "exercises": "what the exercises' reference solutions write (never the files the lessons use)",
    "backups": "copies of the notebooks and data files that `make reset` restored, by time",
}


@dataclass(frozen=True)
class Workspace:
    """Paths of the working folder; every notebook gets them from ``get_workspace()``."""

    root: Path

    # One property per folder of LAYOUT (a test keeps the two lists equal), so editors and grep see them.
    @property
    def models(self) -> Path:
        """``models/``: base models prepared for the course (00_environment_and_base_model)."""
        return self.root / "models"

    @property
    def data(self) -> Path:
        """``data/``: training data (JSONL) (01_self_cognition_data)."""
        return self.root / "data"

    @property
    def configs(self) -> Path:
        """``configs/``: XTuner configs copied and edited by notebook 03 (02_your_own_data)."""
        return self.root / "configs"

    @property
    def work_dirs(self) -> Path:
        """``work_dirs/``: xtuner train output (03_xtuner_config)."""
        return self.root / "work_dirs"

    @property
    def hf_adapter(self) -> Path:
        """``hf_adapter/``: the LoRA adapter in Hugging Face format (05_convert_merge)."""
        return self.root / "hf_adapter"

    @property
    def merged(self) -> Path:
        """``merged/``: base model + adapter merged (05_convert_merge)."""
        return self.root / "merged"

    @property
    def reports(self) -> Path:
        """``reports/``: answers, comparisons, plots, executed notebooks (00_environment_and_base_model)."""
        return self.root / "reports"

    @property
    def gguf(self) -> Path:
        """``gguf/``: GGUF files for llama.cpp and Ollama, the Modelfile, the chat template (08_serve)."""
        return self.root / "gguf"

    @property
    def exercises(self) -> Path:
        """``exercises/``: files written by the exercises' reference solutions (01_self_cognition_data)."""
        return self.root / "exercises"

    @property
    def backups(self) -> Path:
        """``backups/``: what ``make reset`` replaced, one folder per reset (used by scripts/exercises.py)."""
        return self.root / "backups"

    def ensure(self) -> "Workspace":
        """Create the root and every sub-folder of the layout."""
        for name in LAYOUT:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        return self

    @property
    def state_file(self) -> Path:
        """``course_state.json``: what earlier notebooks chose (profile, base model, data, config...)."""
        return self.root / "course_state.json"

    def read_state(self) -> dict:
        """Everything earlier notebooks recorded (00_environment_and_base_model)."""
        return json.loads(self.state_file.read_text(encoding="utf-8")) if self.state_file.is_file() else {}

    def update_state(self, **values) -> dict:
        """Record ``values`` for the later notebooks (paths are stored as strings) (00_environment_and_base_model)."""
        state = self.read_state() | {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
        files.atomic_write_text(self.state_file, json.dumps(state, ensure_ascii=False, indent=2) + "\n", overwrite=True)
        return state

    def recall(self, key: str, notebook: str):
        """A value an earlier notebook recorded; a clear error names the notebook to run first (01_self_cognition_data)."""
        state = self.read_state()
        if key not in state:
            raise LookupError(f"{self.state_file} has no {key!r} yet: run notebook {notebook} first (same working folder).")
        return state[key]

    def describe(self) -> list[tuple[str, str]]:
        """Rows of (folder, what goes there) for the learner (00_environment_and_base_model)."""
        return [(str(self.root / name), why) for name, why in LAYOUT.items()]


def workdir_path(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$COURSE_WORKDIR``, else ``./workspace`` in the repo (on AutoDL: on the data disk)."""
    chosen = root or os.environ.get(ENV_VAR) or platforms.default_workdir(REPO_ROOT)
    return Path(chosen).expanduser().resolve()


def get_workspace(root: str | os.PathLike | None = None) -> Workspace:
    """The working folder, created with its layout; on AutoDL the download caches go to the data disk (00_environment_and_base_model)."""
    platforms.apply_cache_dirs()
    return Workspace(workdir_path(root)).ensure()


def clean_workspace(root: str | os.PathLike | None = None) -> Path | None:
    """Delete the working folder in use; refuse a folder that is not a course working folder (``make clean``)."""
    path = workdir_path(root)
    if not path.exists():
        return None
    entries = {p.name for p in path.iterdir()}
    if not entries <= set(LAYOUT) | {"course_state.json"}:
        strange = sorted(entries - set(LAYOUT) - {"course_state.json"})[:5]
        raise RuntimeError(f"{path} holds {strange}, which the course did not make: not deleting it. "
                           f"Check {ENV_VAR} (it should name the course's working folder) or delete it by hand.")
    shutil.rmtree(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.workspace where|clean``: print or delete the working folder in use."""
    command = (argv if argv is not None else sys.argv[1:]) or ["where"]
    if command == ["where"]:
        print(workdir_path())
        return 0
    if command != ["clean"]:
        print("usage: python -m helpers.workspace [where|clean]", file=sys.stderr)
        return 2
    try:
        deleted = clean_workspace()
    except RuntimeError as exc:
        print(f"make clean: {exc}", file=sys.stderr)
        return 1
    print(f"deleted the working folder {deleted}" if deleted else f"nothing to delete: {workdir_path()} does not exist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
