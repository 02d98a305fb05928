"""Training with ``xtuner train``: the command, a progress bar, and judging the run by what it wrote."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import cli

ITER_LINE = re.compile(r"Iter\(train\)\s*\[\s*(\d+)/(\d+)\].*?\blr:\s*(\S+).*?\bloss:\s*(\S+)")
CHECKPOINT = re.compile(r"^iter_(\d+)\.pth$")


class CheckpointNotFoundError(FileNotFoundError):
    """Raised when a work dir holds no checkpoint to convert or resume from."""


@dataclass
class TrainResult:
    """What one ``xtuner train`` produced."""

    run: cli.XtunerRun
    checkpoint: Path
    work_dir: Path
    seconds: float
    losses: list[float] = field(default_factory=list)


def train_args(config: Path, work_dir: Path, deepspeed: str | None = None, resume: bool = False) -> list[str]:
    """Arguments of ``xtuner train`` for this config and work dir (04_train)."""
    args = ["train", str(config), "--work-dir", str(work_dir)]
    if deepspeed:
        args += ["--deepspeed", deepspeed]
    if resume:
        args += ["--resume", str(latest_checkpoint(work_dir))]
    return args


def parse_iter_line(line: str) -> dict | None:
    """``{'iter', 'max_iters', 'lr', 'loss'}`` from an mmengine training log line, else None (04_train)."""
    match = ITER_LINE.search(line)
    if not match:
        return None
    it, total, lr, loss = match.groups()
    return {"iter": int(it), "max_iters": int(total), "lr": float(lr), "loss": float(loss)}


def train(config: Path, work_dir: Path, deepspeed: str | None = None, resume: bool = False,
          overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Run ``xtuner train`` with a live progress bar; succeed only if it wrote a new checkpoint (04_train)."""
    from tqdm.auto import tqdm

    work_dir = Path(work_dir)
    if list_checkpoints(work_dir) and not (overwrite or resume):
        raise FileExistsError(f"{work_dir} already holds checkpoints. Pass overwrite=True to train again "
                              "(they are replaced), resume=True to continue, or choose another work dir.")
    work_dir.mkdir(parents=True, exist_ok=True)
    bar, losses = tqdm(total=None, desc="xtuner train", unit="it", disable=not progress), []

    def on_line(line: str) -> None:
        info = parse_iter_line(line)
        if info:
            losses.append(info["loss"])
            bar.total = info["max_iters"]
            bar.update(info["iter"] - bar.n)
            bar.set_postfix(loss=f"{info['loss']:.4f}", lr=f"{info['lr']:.2e}")

    start = time.time()
    try:
        run = cli.run_xtuner(*train_args(config, work_dir, deepspeed, resume),
                             log_path=work_dir / "xtuner_train.log", on_line=on_line)
    finally:
        bar.close()
    fresh = [c for c in list_checkpoints(work_dir) if c.stat().st_mtime >= start]
    cli.require(bool(fresh) and run.traceback is None, run, "a new checkpoint",
                "Read the traceback below; the troubleshooting table in the README lists the usual causes.")
    return TrainResult(run, latest_checkpoint(work_dir), work_dir, time.time() - start, losses)


def list_checkpoints(work_dir: Path) -> list[Path]:
    """``iter_N.pth`` files (CPU, single GPU) or folders (DeepSpeed), oldest iteration first (04_train)."""
    work_dir = Path(work_dir)
    found = [p for p in work_dir.glob("iter_*.pth") if CHECKPOINT.match(p.name)] if work_dir.is_dir() else []
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)))


def latest_checkpoint(work_dir: Path) -> Path:
    """The checkpoint mmengine recorded last (file or DeepSpeed folder), via ``find_latest_checkpoint`` (05_convert_merge)."""
    from mmengine.runner import find_latest_checkpoint

    recorded = find_latest_checkpoint(str(work_dir)) if Path(work_dir).is_dir() else None
    if recorded and Path(recorded).exists():
        return Path(recorded)
    found = list_checkpoints(work_dir)
    if found:
        return found[-1]
    raise CheckpointNotFoundError(
        f"No checkpoint (iter_N.pth) in {work_dir}. Run notebook 04 (xtuner train) first, "
        "and check its log for the error that stopped it."
    )


def run_dirs(work_dir: Path) -> list[Path]:
    """The timestamped log folders xtuner made in ``work_dir``, oldest first (04_train)."""
    return sorted(p for p in Path(work_dir).glob("[0-9]*_[0-9]*") if (p / "vis_data").is_dir())


def read_scalars(work_dir: Path) -> list[dict]:
    """Every logged iteration (loss, lr, time...) from ``vis_data/scalars.json``, runs in order (04_train)."""
    rows = {}
    for run_dir in run_dirs(work_dir):
        path = run_dir / "vis_data" / "scalars.json"
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    rows[row["iter"]] = row  # a resumed run continues the same iteration numbers
    if not rows:
        raise FileNotFoundError(f"No vis_data/scalars.json under {work_dir}: training has not logged anything yet.")
    return [rows[k] for k in sorted(rows)]


def loss_summary(scalars: list[dict], window: int = 5) -> dict:
    """First and last loss (means over ``window`` iterations) and seconds per iteration (04_train)."""
    losses = [r["loss"] for r in scalars]
    times = sorted(r["time"] for r in scalars)
    return {"iterations": scalars[-1]["iter"], "first_loss": round(sum(losses[:window]) / len(losses[:window]), 4),
            "final_loss": round(sum(losses[-window:]) / len(losses[-window:]), 4),
            "seconds_per_iter": round(times[len(times) // 2], 4)}


def plot_loss(scalars: list[dict], out_png: Path, title: str = "xtuner train"):
    """Loss (and learning rate) against iteration, saved as a PNG (04_train)."""
    import matplotlib

    matplotlib.use("Agg") if not _in_notebook() else None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([r["iter"] for r in scalars], [r["loss"] for r in scalars], label="loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    lr_ax = ax.twinx()
    lr_ax.plot([r["iter"] for r in scalars], [r["lr"] for r in scalars], color="tab:orange", alpha=0.5, label="lr")
    lr_ax.set_ylabel("learning rate")
    fig.legend(loc="upper right")
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return fig


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def eval_outputs(work_dir: Path) -> dict[int, str]:
    """What ``EvaluateChatHook`` generated, by iteration, from the newest run (04_train)."""
    runs = run_dirs(work_dir)
    if not runs:
        return {}
    found = runs[-1].glob("vis_data/eval_outputs_iter_*.txt")
    return {int(re.search(r"iter_(\d+)", p.name).group(1)): p.read_text(encoding="utf-8") for p in found}
