"""Watching ``xtuner train`` and reading what it logged: progress bar, loss curve, the evaluation hook's answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_LINE = re.compile(r"^\d\d/\d\d \d\d:\d\d:\d\d - mmengine")
SAMPLE_START = "Sample output:"
SAVED = re.compile(r"Saving checkpoint at (\d+) iterations")
ITER_LINE = re.compile(r"Iter\(train\)\s*\[\s*(\d+)/(\d+)\].*?\blr:\s*(\S+).*?\bloss:\s*(\S+)")


class StopTraining(cli.StopRun):
    """Raised by the monitor to end a run cleanly once a checkpoint is safely written."""


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (live widgets), False in a terminal or test."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except ImportError:
        return False


class TrainingMonitor:
    """Follows xtuner's output line by line; pass it as ``on_line`` (04_train)."""

    def __init__(self, progress: bool = True, live: bool | None = None, stop_at: int | None = None,
                 plot_every: int = 5):
        from tqdm.auto import tqdm

        self.rows: list[dict] = []
        self.samples: list[str] = []
        self.stop_at, self.plot_every = stop_at, plot_every
        self.stopped = False  # True once the run was ended on purpose at stop_at
        self.live = _in_notebook() if live is None else live
        self._sample: list[str] | None = None
        # dynamic_ncols: in Jupyter the bar takes the cell's width instead of a few pixels beside long text
        self.bar = tqdm(total=None, desc="xtuner train", unit="it", dynamic_ncols=True, disable=not progress)
        if self.live:
            import ipywidgets
            from IPython.display import display

            self.plot_out, self.sample_out = ipywidgets.Output(), ipywidgets.Output()
            display(ipywidgets.VBox([self.plot_out, ipywidgets.HTML("<b>EvaluateChatHook</b>"), self.sample_out]))

    def __call__(self, line: str) -> None:
        line = ANSI.sub("", line)
        if self._sample is not None:
            if not LOG_LINE.match(line):
                self._sample.append(line)
                return
            self._finish_sample()
        if line.endswith(SAMPLE_START):
            self._sample = []
            return
        info = _parse_iter_line(line)
        if info:
            self._on_iter(info)
        elif (saved := SAVED.search(line)) and self.bar.total:
            self.bar.update(int(saved.group(1)) - self.bar.n)  # the last iteration need not be logged

    def _on_iter(self, info: dict) -> None:
        if self.stop_at is not None and info["iter"] > self.stop_at:
            self.stopped = True
            raise StopTraining(f"stopped after iteration {self.stop_at}")
        self.rows.append(info)
        if self.bar.total != info["max_iters"]:
            self._size_bar(info["max_iters"], info["iter"] - 1)
        self.bar.update(info["iter"] - self.bar.n)
        self.bar.set_postfix(loss=f"{info['loss']:.4f}", lr=f"{info['lr']:.2e}")
        if self.live and info["iter"] % self.plot_every == 0:
            self.redraw()

    def _size_bar(self, total: int, done: int) -> None:
        # reset() resizes the notebook widget (assigning .total does not); a resumed run starts at its checkpoint,
        # and only this run's iterations count towards the rate and the time left
        self.bar.reset(total=total)
        self.bar.n = self.bar.last_print_n = self.bar.initial = done

    def _finish_sample(self) -> None:
        text = "\n".join(self._sample or []).strip()
        self._sample = None
        if text:
            self.samples.append(text)
            if self.live:
                with self.sample_out:
                    print(text, "\n")

    def redraw(self) -> None:
        """Redraw the live loss curve (used by the monitor itself)."""
        import matplotlib.pyplot as plt
        from IPython.display import clear_output, display

        with self.plot_out:
            clear_output(wait=True)
            fig = plot_loss(self.rows, None, title=f"iteration {self.rows[-1]['iter']}/{self.rows[-1]['max_iters']}")
            display(fig)
            plt.close(fig)

    def close(self) -> None:
        """Flush the last sample, draw the final curve, close the bar (used by training.train)."""
        if self._sample is not None:
            self._finish_sample()
        if self.live and self.rows:
            self.redraw()
        if self.stopped:
            self._close_planned_stop()
        else:
            self.bar.close()  # a notebook bar that ends before its total turns red: the run failed or was interrupted

    def _close_planned_stop(self) -> None:
        # tqdm.notebook paints every bar closed before its total as failed; a planned stop is not a failure
        from tqdm.std import tqdm as text_tqdm

        self.bar.set_description("planned stop, checkpoint saved")  # short: the bar keeps its width beside it
        if hasattr(self.bar, "container"):  # the notebook widget
            self.bar.disp(bar_style="info")
            text_tqdm.close(self.bar)
        else:
            self.bar.close()


def _parse_iter_line(line: str) -> dict | None:
    """``{'iter', 'max_iters', 'lr', 'loss'}`` from an mmengine training log line, else None."""
    match = ITER_LINE.search(line)
    if not match:
        return None
    it, total, lr, loss = match.groups()
    return {"iter": int(it), "max_iters": int(total), "lr": float(lr), "loss": float(loss)}


def run_dirs(work_dir: Path) -> list[Path]:
    """The timestamped log folders xtuner made in ``work_dir``, oldest first (used by training.train)."""
    return sorted(p for p in Path(work_dir).glob("[0-9]*_[0-9]*") if (p / "vis_data").is_dir())


def read_scalars(work_dir: Path, last_run_only: bool = False) -> list[dict]:
    """Every logged iteration (loss, lr, time...) from ``vis_data/scalars.json``, runs in order (04_train)."""
    rows = {}
    for run_dir in run_dirs(work_dir)[-1:] if last_run_only else run_dirs(work_dir):
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


def plot_loss(scalars: list[dict], out_png: Path | None, title: str = "xtuner train", marks: tuple[int, ...] = ()):
    """Loss (and learning rate) against iteration; saved as a PNG when ``out_png`` is given (04_train)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([r["iter"] for r in scalars], [r["loss"] for r in scalars], label="loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    for mark in marks:
        ax.axvline(mark, color="gray", linestyle=":", label=f"resumed after {mark}")
    lr_ax = ax.twinx()
    lr_ax.plot([r["iter"] for r in scalars], [r["lr"] for r in scalars], color="tab:orange", alpha=0.5, label="lr")
    lr_ax.set_ylabel("learning rate")
    lines = ax.get_lines() + lr_ax.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right")
    fig.tight_layout()
    if out_png is not None:
        Path(out_png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_png, dpi=100)
    return fig


def plot_rewards(scalars: list[dict], out_png: Path | None, title: str = "preference tuning"):
    """The rewards XTuner's DPO/ORPO log each iteration: chosen and rejected rewards, their margin, and the share of
    the last 5 pairs whose chosen reward was higher (``reward_acc`` of one pair is 0 or 1); PNG if ``out_png`` (10_preference)."""
    import matplotlib.pyplot as plt

    steps = [r["iter"] for r in scalars]
    fig, (rewards, acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("chosen_rewards", "rejected_rewards", "reward_margin"):
        rewards.plot(steps, [r[key] for r in scalars], label=key)
    rewards.axhline(0, color="gray", linewidth=0.5)
    rewards.set_xlabel("iteration")
    rewards.set_title(title)
    rewards.legend()
    hits = [r["reward_acc"] for r in scalars]
    acc.plot(steps, [sum(hits[max(0, i - 4):i + 1]) / len(hits[max(0, i - 4):i + 1]) for i in range(len(hits))])
    acc.set_ylim(-0.05, 1.05)
    acc.set_xlabel("iteration")
    acc.set_title("reward_acc (mean of the last 5 iterations)")
    fig.tight_layout()
    if out_png is not None:
        Path(out_png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_png, dpi=100)
    return fig


def eval_outputs(work_dir: Path) -> dict[int, str]:
    """What ``EvaluateChatHook`` saved in every run of ``work_dir`` (its answers at each checkpoint), by the number of
    steps trained when it answered (04_train).

    The hook names its file after mmengine's 0-based ``runner.iter``: ``iter_{N-1}`` holds the answers after step N.
    It saves nothing before training (those answers are only in the log)."""
    found = {}
    for run in run_dirs(work_dir):
        for path in run.glob("vis_data/eval_outputs_iter_*.txt"):
            found[int(re.search(r"iter_(\d+)", path.name).group(1)) + 1] = path.read_text(encoding="utf-8")
    return dict(sorted(found.items()))
