"""Watching ``xtuner train``: progress bar, live loss curve and the evaluation hook's answers as they appear."""

from __future__ import annotations

import re

from . import cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_LINE = re.compile(r"^\d\d/\d\d \d\d:\d\d:\d\d - mmengine")
SAMPLE_START = "Sample output:"
SAVED = re.compile(r"Saving checkpoint at (\d+) iterations")


class StopTraining(cli.StopRun):
    """Raised by the monitor to end a run cleanly once a checkpoint is safely written."""


def in_notebook() -> bool:
    """True inside a Jupyter kernel (live widgets), False in a terminal or test (04_train)."""
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

        from .training import parse_iter_line

        self.parse = parse_iter_line
        self.rows: list[dict] = []
        self.samples: list[str] = []
        self.stop_at, self.plot_every = stop_at, plot_every
        self.stopped = False  # True once the run was ended on purpose at stop_at
        self.live = in_notebook() if live is None else live
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
        info = self.parse(line)
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
        """Redraw the live loss curve (04_train)."""
        import matplotlib.pyplot as plt
        from IPython.display import clear_output, display

        from .training import plot_loss

        with self.plot_out:
            clear_output(wait=True)
            fig = plot_loss(self.rows, None, title=f"iteration {self.rows[-1]['iter']}/{self.rows[-1]['max_iters']}")
            display(fig)
            plt.close(fig)

    def close(self) -> None:
        """Flush the last sample, draw the final curve, close the bar (04_train)."""
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
