"""Servers that notebook 08 starts and stops: the streamlit web demo and llama.cpp's OpenAI-compatible server.

Every server binds loopback (127.0.0.1) unless the learner passes another host, runs in its own process group,
and is stopped by ``Server.stop``, by ``stop_all`` at the notebook's end, on an interrupt while it starts, and
when the kernel exits.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import cli, lab, platforms
from .models import check_model_dir

LOOPBACK = "127.0.0.1"
WEB_DEMO = Path(__file__).with_name("web_demo.py")
_RUNNING: list["Server"] = []


class ServerError(RuntimeError):
    """A server did not come up; the message carries the end of its log."""


@dataclass
class Server:
    """A background server: its process (own process group), URL, log file and the command line shown."""

    name: str
    process: subprocess.Popen
    url: str
    log_path: Path
    shown: str

    def stop(self) -> None:
        """Stop the server and every process it started; safe to call twice (08_serve)."""
        cli._stop_group(self.process, grace=10.0)
        if self in _RUNNING:
            _RUNNING.remove(self)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's log (08_serve)."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_all() -> list[str]:
    """Stop every server this kernel started; returns their names (08_serve)."""
    names = [server.name for server in list(_RUNNING)]
    for server in list(_RUNNING):
        server.stop()
    return names


atexit.register(stop_all)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _address(host: str, port: int | None) -> tuple[str, int]:
    """The host and port to listen on: a free one when ``port`` is None; a taken one is an error."""
    if port is None:
        return host, _free_port(host)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is not a TCP port (1-65535). Pass port=None to take a free one.")
    if not lab.port_free(host, int(port)):
        raise OSError(f"端口 {port}（{host}）已被占用（也许是上一次启动的服务还在运行，或是平台自己的服务）。"
                      f"Port {port} on {host} is taken: pass another port, or port=None to take a free one; "
                      f"`serving.stop_all()` stops the servers this notebook started.")
    return host, int(port)


def _start(name: str, command: list[str], host: str, port: int, ready_path: str, log_path: Path,
           timeout: float, env: dict | None = None) -> Server:
    """Start ``command`` in its own process group, print it, and wait until ``ready_path`` answers HTTP 200."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = "$ " + shlex.join(command)
    print(shown, flush=True)
    # The fork for preexec_fn runs the tokenizers library's fork handler, which prints a parallelism warning into the
    # notebook once the kernel has tokenised anything; the variable (read at the fork) turns both off.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env=dict(os.environ, **(env or {})), preexec_fn=_die_with_parent)
    server = Server(name, process, f"http://{LOOPBACK if host == '0.0.0.0' else host}:{port}", log_path, shown)
    _RUNNING.append(server)
    try:
        _wait_ready(server, ready_path, timeout)
    except BaseException:  # an interrupt (Kernel → Interrupt) while waiting stops it too
        server.stop()
        raise
    return server


def _die_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the kernel that started it dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop_all and the exit handler still stop it


def _wait_ready(server: Server, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"{server.name} exited with status {server.process.returncode} before it answered. "
                              f"The end of its log ({server.log_path}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise ServerError(f"{server.name} did not answer {server.url + path} within {timeout:.0f} s. "
                      f"The end of its log ({server.log_path}):\n{server.log_tail()}")


def check_merged_dir(path: Path) -> Path:
    """Fail clearly unless ``path`` is a complete merged model folder: config, tokenizer and weights (used by
    llamacpp)."""
    path = check_model_dir(Path(path))
    weights = [*path.glob("*.safetensors"), *path.glob("pytorch_model*.bin")]
    missing = [what for what, ok in (("weights (*.safetensors or pytorch_model*.bin)", weights),
                                     ("tokenizer_config.json", (path / "tokenizer_config.json").is_file()))
               if not ok]
    index = next(iter(path.glob("*.index.json")), None)
    if index is not None:
        shards = set(json.loads(index.read_text())["weight_map"].values())
        missing += [f"shard {s}" for s in sorted(shards) if not (path / s).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} looks half-written: no {', '.join(missing)}. Run notebook 05 (merge) again "
                                "with overwrite=True, and let it finish.")
    return path


def start_web_demo(model_dir: Path, template: str, system: str = "", port: int | None = None,
                   host: str = LOOPBACK, max_new_tokens: int = 128, device: str = "cpu",
                   trust_remote_code: bool = False, log_dir: Path = Path("."), timeout: float = 120) -> Server:
    """Start ``helpers/web_demo.py`` with streamlit on ``host:port`` (a free loopback port by default) and wait
    until it is up (08_serve)."""
    model_dir = check_merged_dir(model_dir)
    host, port = _address(host, port)
    command = [sys.executable, "-m", "streamlit", "run", str(WEB_DEMO), "--server.address", host,
               "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
               "--", *_demo_args(model_dir, template, system, max_new_tokens, device, trust_remote_code)]
    return _start("web demo (streamlit)", command, host, port, "/_stcore/health", Path(log_dir) / "web_demo.log",
                  timeout)


def _demo_args(model_dir: Path, template: str, system: str, max_new_tokens: int, device: str,
               trust_remote_code: bool) -> list[str]:
    """The web demo's own arguments (after streamlit's ``--``)."""
    return ["--model", str(model_dir), "--template", template, "--system", system, "--max-new-tokens",
            str(max_new_tokens), "--device", device, *(["--trust-remote-code"] if trust_remote_code else [])]


def ask_web_demo(model_dir: Path, template: str, question: str, system: str = "", max_new_tokens: int = 128,
                 device: str = "cpu", trust_remote_code: bool = False, timeout: float = 300) -> str:
    """One chat turn through the web demo's own code, without a browser (streamlit's ``AppTest``); returns the
    answer shown on the page (08_serve)."""
    import logging

    backend = os.environ.get("MPLBACKEND")
    from streamlit.testing.v1 import AppTest

    _restore_env("MPLBACKEND", backend)  # importing streamlit sets MPLBACKEND=Agg for the whole kernel

    # AppTest runs the script without a browser session; streamlit warns about that once per run
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)

    args = _demo_args(check_merged_dir(model_dir), template, system, max_new_tokens, device, trust_remote_code)
    saved, sys.argv = sys.argv, [str(WEB_DEMO), *args]
    try:
        app = AppTest.from_file(str(WEB_DEMO), default_timeout=timeout).run()
        app.chat_input[0].set_value(question).run()
    finally:
        sys.argv = saved
    if app.exception:
        raise ServerError(f"the web demo raised: {app.exception[0].message}")
    return app.session_state["history"][-1][1]


class NoBrowserError(RuntimeError):
    """No browser to drive here (Debian's chromium or the playwright package is missing)."""


CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (scripts/install_browser.sh); Playwright downloads none
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def ask_in_browser(server: Server, question: str, screenshot: Path, timeout_s: float = 300) -> str:
    """Open the web demo in headless Chromium, type ``question``, wait for the whole reply, save a screenshot and
    return the reply as the page shows it (08_serve)."""
    if not CHROMIUM.exists():
        raise NoBrowserError(f"没有浏览器可用（{CHROMIUM} 不存在），跳过浏览器截图；"
                             "root 用户可以运行 scripts/install_browser.sh 安装 chromium。")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise NoBrowserError(f"the playwright package is missing ({err}): run `make install`.") from err
    # Playwright's sync API refuses a thread with a running asyncio loop (a Jupyter kernel's): use a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(_browser_chat, sync_playwright, server.url, question, Path(screenshot),
                             int(timeout_s * 1000)).result()


def _browser_chat(sync_playwright, url: str, question: str, screenshot: Path, timeout_ms: int) -> str:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(url, timeout=timeout_ms)
            box = page.get_by_test_id("stChatInputTextArea")
            box.wait_for(timeout=timeout_ms)  # the first page load also loads the model
            box.fill(question)
            box.press("Enter")
            page.get_by_test_id("stChatMessageContent").nth(1).wait_for(timeout=timeout_ms)
            page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_ms)
            reply = page.get_by_test_id("stChatMessageContent").nth(1).inner_text()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return reply.strip()


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def access_hints(server: Server) -> list[str]:
    """How the learner opens the page from their own computer, for this platform (08_serve)."""
    port = server.url.rsplit(":", 1)[1]
    hints = [f"在本机的浏览器打开 {server.url}"]
    if platforms.detect_platform() in ("internstudio", "autodl"):
        hints = [f"在你自己电脑的终端运行（SSH 地址和端口见平台的“SSH 连接”）：{lab.ssh_tunnel(int(port))}",
                 f"然后在自己电脑的浏览器打开 http://127.0.0.1:{port}"]
    if platforms.detect_platform() == "autodl":
        hints.append(f"或者用 AutoDL 的自定义服务：以 port={lab.AUTODL_SERVICE_PORT}, host=\"0.0.0.0\" 启动，"
                     "再在控制台 → 容器实例 → 自定义服务里打开（JupyterLab 若占着这个端口，就用 SSH 隧道）")
    return hints


def start_llama_server(gguf_file: Path, port: int | None = None, host: str = LOOPBACK, n_ctx: int = 2048,
                       n_threads: int | None = None, log_dir: Path = Path("."), timeout: float = 120) -> Server:
    """Start llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) on a GGUF file and wait
    until ``/v1/models`` answers (08_serve)."""
    gguf_file = Path(gguf_file)
    if not gguf_file.is_file():
        raise FileNotFoundError(f"{gguf_file} does not exist: convert the merged model first (section 2).")
    host, port = _address(host, port)
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_file), "--host", host, "--port",
               str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads or os.cpu_count() or 1)]
    return _start("OpenAI-compatible server (llama.cpp)", command, host, port, "/v1/models",
                  Path(log_dir) / "llama_server.log", timeout)


def chat_completion(url: str, messages: list[dict], max_tokens: int = 64, temperature: float = 0.0,
                    stream: bool = False, **extra) -> str | Iterator[str]:
    """POST ``/v1/chat/completions`` with plain HTTP: the answer, or with ``stream=True`` its pieces as the server
    sends them (server-sent events); ``extra`` adds fields a server understands beyond OpenAI's (08_serve)."""
    body = json.dumps({"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                       "stream": stream, **extra}).encode()
    request = urllib.request.Request(url.rstrip("/") + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    if stream:
        return _stream_events(request)
    with urllib.request.urlopen(request, timeout=300) as reply:
        return json.loads(reply.read())["choices"][0]["message"]["content"]


def _stream_events(request: urllib.request.Request) -> Iterator[str]:
    with urllib.request.urlopen(request, timeout=300) as reply:
        for raw in reply:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            delta = json.loads(line[5:])["choices"][0].get("delta", {})
            if delta.get("content"):
                yield delta["content"]
