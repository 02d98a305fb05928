"""The working folder: one place, with a fixed layout, for everything a run produces."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "COURSE_WORKDIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
LAYOUT = {
    "models": "base models prepared for the course (unpacked or built once, then reused)",
    "data": "training data written by notebook 01 (JSONL)",
    "configs": "XTuner configs copied and edited by notebook 03",
    "work_dirs": "xtuner train output: logs, checkpoints (iter_N.pth), vis_data",
    "hf_adapter": "the LoRA adapter converted by xtuner convert pth_to_hf",
    "merged": "base model + adapter merged by xtuner convert merge",
    "reports": "answers, comparisons, plots, executed notebooks",
}


@dataclass(frozen=True)
class Workspace:
    """Paths of the working folder; every notebook gets them from ``get_workspace()``."""

    root: Path

    def __getattr__(self, name: str) -> Path:
        if name in LAYOUT:
            return self.root / name
        raise AttributeError(name)

    def ensure(self) -> "Workspace":
        """Create the root and every sub-folder of the layout (00_environment)."""
        for name in LAYOUT:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        return self

    @property
    def state_file(self) -> Path:
        """``course_state.json``: what earlier notebooks chose (profile, base model, data, config...)."""
        return self.root / "course_state.json"

    def read_state(self) -> dict:
        """Everything earlier notebooks recorded (00_environment)."""
        return json.loads(self.state_file.read_text(encoding="utf-8")) if self.state_file.is_file() else {}

    def update_state(self, **values) -> dict:
        """Record ``values`` for the later notebooks (paths are stored as strings) (00_environment)."""
        from .files import atomic_write_text

        state = self.read_state() | {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
        atomic_write_text(self.state_file, json.dumps(state, ensure_ascii=False, indent=2) + "\n", overwrite=True)
        return state

    def recall(self, key: str, notebook: str):
        """A value an earlier notebook recorded; a clear error names the notebook to run first (03_xtuner_config)."""
        state = self.read_state()
        if key not in state:
            raise LookupError(f"{self.state_file} has no {key!r} yet: run notebook {notebook} first (same working folder).")
        return state[key]

    def describe(self) -> list[tuple[str, str]]:
        """Rows of (folder, what goes there) for the learner (00_environment)."""
        return [(str(self.root / name), why) for name, why in LAYOUT.items()]


def get_workspace(root: str | os.PathLike | None = None) -> Workspace:
    """The working folder: ``root``, else ``$COURSE_WORKDIR``, else ``./workspace`` in the repo (00_environment)."""
    chosen = root or os.environ.get(ENV_VAR) or REPO_ROOT / "workspace"
    return Workspace(Path(chosen).expanduser().resolve()).ensure()
