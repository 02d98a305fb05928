"""Training with ``xtuner train``: the command, a progress bar, and judging the run by what it wrote."""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import cli
from .monitor import ANSI, TrainingMonitor, _parse_iter_line, run_dirs

CHECKPOINT = re.compile(r"^iter_(\d+)\.pth$")
# xtuner 0.2.0 reads the resumed checkpoint's seed with torch.load(), which torch >= 2.6 refuses by default
# ("Weights only load failed"); the checkpoint is our own, so allow full unpickling for resumed runs only.
RESUME_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


class CheckpointNotFoundError(FileNotFoundError):
    """Raised when a work dir holds no checkpoint to convert or resume from."""


@dataclass
class TrainResult:
    """What one ``xtuner train`` produced."""

    run: cli.XtunerRun
    checkpoint: Path
    work_dir: Path
    seconds: float
    stopped: bool = False  # ended on purpose (stop_at) before max_iters
    peak_rss_gb: float = 0.0  # peak memory of this run's processes (RAM; GPU memory is not included)
    losses: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)


def train_args(config: Path, work_dir: Path, deepspeed: str | None = None, resume: bool = False) -> list[str]:
    """Arguments of ``xtuner train`` for this config and work dir (04_train)."""
    args = ["train", str(config), "--work-dir", str(work_dir)]
    if deepspeed:
        args += ["--deepspeed", deepspeed]
    if resume:
        args += ["--resume", str(latest_checkpoint(work_dir))]
    return args


def train(config: Path, work_dir: Path, deepspeed: str | None = None, resume: bool = False,
          overwrite: bool = False, progress: bool = True, live: bool | None = None,
          stop_at: int | None = None) -> TrainResult:
    """Run ``xtuner train`` with a live view; succeed only if it wrote a new checkpoint (04_train).

    ``stop_at=N`` ends the run cleanly once the checkpoint of iteration N is written (resume it with
    ``resume=True``); interrupting the kernel also stops xtuner and everything it started.
    """
    work_dir = Path(work_dir)
    if list_checkpoints(work_dir) and not (overwrite or resume):
        raise FileExistsError(f"{work_dir} already holds checkpoints. Pass overwrite=True to train again "
                              "(they are replaced), resume=True to continue, or choose another work dir.")
    if overwrite and not resume:
        for old in [*list_checkpoints(work_dir), *run_dirs(work_dir), work_dir / "last_checkpoint"]:
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    args, log_path = train_args(config, work_dir, deepspeed, resume), work_dir / "xtuner_train.log"
    monitor, start, before = TrainingMonitor(progress=progress, live=live, stop_at=stop_at), time.time(), _stamps(work_dir)
    try:
        run = cli.run_xtuner(*args, log_path=log_path, on_line=monitor, env=RESUME_ENV if resume else None)
    except KeyboardInterrupt:
        newest = _newest_or_none(work_dir)
        print(f"Training interrupted; xtuner stopped. Continue with resume=True from {newest}." if newest else
              "Training interrupted before its first checkpoint; xtuner stopped. Train again from the start.")
        raise
    finally:
        monitor.close()
    fresh = set(_stamps(work_dir).items()) - set(before.items())
    cli.require(bool(fresh) and (run.stopped or run.traceback is None), run, "a new checkpoint",
                "Read the traceback below; docs/troubleshooting.md lists the usual causes.")
    return TrainResult(run, latest_checkpoint(work_dir), work_dir, time.time() - start, run.stopped, run.peak_rss_gb,
                       [r["loss"] for r in monitor.rows], monitor.samples)


def resume_point(work_dir: Path) -> int | None:
    """The iteration of the newest checkpoint when the run that wrote it ended before its last iteration (stopped at
    ``stop_at`` or interrupted): ``train(..., resume=True)`` continues from there. None when there is nothing to
    resume (04_train)."""
    if not list_checkpoints(work_dir):
        return None
    done = int(CHECKPOINT.match(latest_checkpoint(work_dir).name).group(1))
    log = Path(work_dir) / "xtuner_train.log"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    rows = [row for line in lines if (row := _parse_iter_line(ANSI.sub("", line)))]
    return done if not rows or done < rows[-1]["max_iters"] else None


def _stamps(work_dir: Path) -> dict[Path, int]:
    """Each checkpoint with its modification time: a checkpoint is new if it was not here, or was rewritten."""
    return {c: c.stat().st_mtime_ns for c in list_checkpoints(work_dir)}


def _newest_or_none(work_dir: Path) -> Path | None:
    found = list_checkpoints(work_dir)
    return found[-1] if found else None


DEEPSPEED_CONFIGS = ("deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero2_offload", "deepspeed_zero3",
                     "deepspeed_zero3_offload")


def distributed_commands(config: Path, work_dir: Path, gpus_per_node: int, nnodes: int = 1,
                         deepspeed: str = "deepspeed_zero2", master_addr: str | None = None,
                         port: int = 29500) -> list[str]:
    """The ``xtuner train`` command line for each node of a multi-GPU / multi-node DeepSpeed run (04_train)."""
    if deepspeed not in DEEPSPEED_CONFIGS:
        raise ValueError(f"Unknown DeepSpeed config {deepspeed!r}; xtuner ships {', '.join(DEEPSPEED_CONFIGS)}.")
    if gpus_per_node < 1 or nnodes < 1:
        raise ValueError("gpus_per_node and nnodes must be at least 1.")
    if nnodes > 1 and not master_addr:
        raise ValueError("A multi-node run needs master_addr: the IP address of node 0, reachable from every node.")
    train = cli.show(cli.xtuner_command(*train_args(config, work_dir, deepspeed)))
    if nnodes == 1:
        return [f"NPROC_PER_NODE={gpus_per_node} {train}"]
    return [f"NPROC_PER_NODE={gpus_per_node} NNODES={nnodes} NODE_RANK={rank} ADDR={master_addr} PORT={port} {train}"
            for rank in range(nnodes)]


def list_checkpoints(work_dir: Path) -> list[Path]:
    """``iter_N.pth`` files (CPU, single GPU) or folders (DeepSpeed), oldest iteration first (04_train)."""
    work_dir = Path(work_dir)
    found = [p for p in work_dir.glob("iter_*.pth") if CHECKPOINT.match(p.name)] if work_dir.is_dir() else []
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)))


def latest_checkpoint(work_dir: Path) -> Path:
    """The checkpoint mmengine recorded last (file or DeepSpeed folder), via ``find_latest_checkpoint`` (04_train)."""
    from mmengine.runner import find_latest_checkpoint

    recorded = find_latest_checkpoint(str(work_dir)) if Path(work_dir).is_dir() else None
    if recorded and Path(recorded).exists():
        return Path(recorded)
    found = list_checkpoints(work_dir)
    if found:
        return found[-1]
    raise CheckpointNotFoundError(
        f"No checkpoint (iter_N.pth) in {work_dir}. Run notebook 04 (xtuner train) first, "
        "and check its log for the error that stopped it (docs/troubleshooting.md#9)."
    )
