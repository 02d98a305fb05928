"""`make lab`: JupyterLab as root on the address the learner chooses, with how to reach it printed."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from helpers import lab


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_command_as_root_allows_root_on_a_fixed_port():
    command = lab.lab_command("0.0.0.0", 6006, "tok", as_root=True)
    assert command[:3] == [sys.executable, "-m", "jupyterlab"] and "--allow-root" in command
    assert {"--ServerApp.ip=0.0.0.0", "--ServerApp.port=6006", "--ServerApp.port_retries=0",
            "--IdentityProvider.token=tok", "--no-browser"} <= set(command)
    assert "--allow-root" not in lab.lab_command("127.0.0.1", 8888, "tok", as_root=False)


def test_defaults_and_hints_per_platform(fake_root):
    assert lab.default_address() == ("127.0.0.1", 8888)
    assert any("127.0.0.1:8888/lab/tree/notebooks?token=t" in line for line in lab.access_hints("127.0.0.1", 8888, "t"))
    (fake_root / "root/share/new_models").mkdir(parents=True)
    hints = "\n".join(lab.access_hints("127.0.0.1", 8888, "t"))
    assert "ssh -CNg -L 8888:127.0.0.1:8888" in hints and "InternStudio" in hints
    (fake_root / "root/share").rename(fake_root / "root/elsewhere")
    (fake_root / "root/autodl-tmp").mkdir()
    assert lab.default_address() == ("0.0.0.0", 6006)
    assert "自定义服务" in "\n".join(lab.access_hints("0.0.0.0", 6006, "t"))
    assert "LAB_PORT=6006" in "\n".join(lab.access_hints("127.0.0.1", 8888, "t"))


def test_taken_port_is_refused_with_another_to_try(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert lab.main(["--ip", "127.0.0.1", "--port", str(port)]) == 1
    assert f"LAB_PORT={port + 1}" in capsys.readouterr().err


def test_lab_really_starts_here_and_offers_the_course_kernel(tmp_path):
    """As this machine's user (root in CI): the server answers with the printed token and lists xtuner-course."""
    port, token = free_port(), "course-test-token"
    env = {**os.environ, "COURSE_LAB_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "helpers.lab", "--ip", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        specs = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}", timeout=2) as r:
                    specs = json.load(r)
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        assert specs is not None, proc.stdout.read() if proc.poll() is not None else "no answer in 60 s"
        assert "xtuner-course" in specs["kernelspecs"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/lab/tree/notebooks?token={token}" in out  # printed before the server starts
    assert "Running as root is not recommended" not in out  # as root, jupyter stops with this unless --allow-root
