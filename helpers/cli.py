"""Running the real ``xtuner`` command line: right interpreter, right environment, output streamed."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Convert and merge die on some platforms with "MKL_THREADING_LAYER=INTEL is incompatible with libgomp".
MKL_ENV = {"MKL_SERVICE_FORCE_INTEL": "1", "MKL_THREADING_LAYER": "GNU"}


class XtunerError(RuntimeError):
    """An xtuner command failed; the message carries its real traceback."""


class StopRun(Exception):
    """Raised by an ``on_line`` callback to end the command on purpose (e.g. training after a checkpoint)."""


@dataclass
class XtunerRun:
    """What an xtuner command printed (xtuner's own exit status is 0 even after a traceback)."""

    command: list[str]
    output: str
    returncode: int
    peak_rss_gb: float = 0.0  # the most memory the command's processes held together (RAM, shared pages once)
    stopped: bool = False  # ended on purpose by a StopRun from on_line
    shown: str = ""  # the command line as printed for the learner (``show``), environment and piped input included

    @property
    def traceback(self) -> str | None:
        """The last Python traceback in the output, if any (04_train)."""
        return _find_traceback(self.output)


def xtuner_env(extra: dict | None = None) -> dict:
    """Environment for xtuner: this interpreter's folder first on PATH (xtuner runs ``python``), MKL fixed
    (used by run_xtuner and preflight)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(MKL_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def xtuner_command(*args: str) -> list[str]:
    """``xtuner ARGS`` using the xtuner installed beside this interpreter (04_train)."""
    local = Path(sys.executable).parent / "xtuner"
    return [str(local) if local.exists() else "xtuner", *map(str, args)]


def show(command: list[str], env: dict | None = None, input_text: str | None = None) -> str:
    """The command as the learner would type it in a terminal: ``VAR=value`` for each of ``env``, and
    ``printf '...' |`` for piped input (04_train)."""
    line = shlex.join([Path(command[0]).name if command[0].endswith("/xtuner") else command[0], *command[1:]])
    line = " ".join([*(f"{k}={shlex.quote(str(v))}" for k, v in (env or {}).items()), line])
    if input_text is not None:
        text = input_text.replace("\\", "\\\\").replace("%", "%%").replace("\n", "\\n")
        line = f"printf {shlex.quote(text)} | {line}"
    return line


def run_xtuner(*args: str, log_path: Path | None = None, on_line: Callable[[str], None] | None = None,
               input_text: str | None = None, env: dict | None = None, cwd: Path | None = None,
               show_command: bool = True) -> XtunerRun:
    """Print ``$ xtuner ARGS`` exactly as run, then run it, streaming each output line to ``on_line`` and ``log_path``;
    every helper that runs xtuner uses it (02_your_own_data).

    The printed line carries ``env`` (the variables this command sets) and the piped ``input_text``; the defaults of
    ``xtuner_env`` for every command (PATH, MKL, unbuffered output) are left out.
    """
    command, lines, stopped = xtuner_command(*args), [], False
    shown = show(command, env, input_text)
    if show_command:
        print(f"$ {shown}", flush=True)
    log = open(log_path, "w", encoding="utf-8") if log_path else None
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                              env=xtuner_env(env), cwd=cwd, encoding="utf-8", errors="replace",
                              start_new_session=True) as proc, MemorySampler(proc.pid) as memory:
            try:
                if input_text is not None:
                    proc.stdin.write(input_text)
                    proc.stdin.close()
                for line in proc.stdout:
                    lines.append(line)
                    if log:
                        log.write(line)
                        log.flush()
                    if on_line:
                        on_line(line.rstrip("\n"))  # may raise StopRun to end the run on purpose
            except StopRun:
                _stop_group(proc)
                stopped = True
            except BaseException:
                _stop_group(proc)
                raise
    finally:
        if log:
            log.close()
    return XtunerRun(command, "".join(lines), proc.returncode, memory.peak_gb, stopped, shown)


def _group_memory_bytes(pgid: int) -> int:
    """Memory of every process in process group ``pgid`` (xtuner and the python it starts), from /proc: the
    proportional set size, so libraries both processes map are counted once, not twice."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:  # fields after the command name: state ppid pgrp
                rollup = Path(entry.path, "smaps_rollup").read_text()
                total += int(rollup.split("\nPss:", 1)[1].split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
    return total


class MemorySampler:
    """Samples one process group's resident memory in a background thread; ``peak_gb`` after the run.

    One sample reads smaps_rollup, which walks each process's page tables: ~28 ms of CPU for a training process.
    Every 0.5 s that took a core's time from training on a 2-core CPU (04's 60 iterations 109-124 s against
    97-106 s at every 2-5 s, same peak); every 2 s still samples a 1.3 s training step often enough for its peak."""

    def __init__(self, pgid: int, every: float = 2.0):
        self.pgid, self.every, self.peak = pgid, every, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _group_memory_bytes(self.pgid))
            self._done.wait(self.every)

    @property
    def peak_gb(self) -> float:
        return round(self.peak / 1e9, 2)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """End xtuner and the ``python``/``torchrun`` it started (their own process group): TERM, then KILL."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def _find_traceback(output: str) -> str | None:
    """The last ``Traceback ...`` block of ``output`` through its error line."""
    start = output.rfind("Traceback (most recent call last):")
    if start < 0:
        return None
    block = output[start:].splitlines()
    for i, line in enumerate(block[1:], start=1):
        if line and not line.startswith((" ", "\t")):  # first unindented line is the exception
            return "\n".join(block[: i + 1])
    return "\n".join(block)


def require(ok: bool, run: XtunerRun, what: str, fix: str = "") -> None:
    """Raise ``XtunerError`` with the real traceback when a command did not produce ``what`` (used by every helper that runs xtuner)."""
    if ok:
        return
    detail = run.traceback or run.output[-3000:]
    raise XtunerError(f"`{run.shown or show(run.command)}` did not produce {what}. {fix}\n\n{detail}".strip())
