"""JupyterLab for the course (``make lab``): as root where the platforms log learners in as root, and how to reach it.

Usage: python -m helpers.lab [--ip 127.0.0.1] [--port 8888]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys

from . import platforms
from .workspace import REPO_ROOT

AUTODL_SERVICE_PORT = 6006  # the port AutoDL's "custom service" (自定义服务) publishes
DEFAULTS = {"autodl": ("0.0.0.0", AUTODL_SERVICE_PORT)}
LOCAL = ("127.0.0.1", 8888)


def default_address() -> tuple[str, int]:
    """Where JupyterLab listens unless the learner says: AutoDL's custom-service port there, else loopback 8888."""
    return DEFAULTS.get(platforms.detect_platform(), LOCAL)


def port_free(ip: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``ip`` now."""
    with socket.socket() as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def lab_command(ip: str, port: int, token: str, as_root: bool) -> list[str]:
    """The ``jupyter lab`` command line: no browser, a fixed port (no silent retry), ``--allow-root`` for root; it
    serves the repository (the notebooks link ../images and ../docs) and opens on notebooks/."""
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={ip}", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={REPO_ROOT}",
               "--ServerApp.default_url=/lab/tree/notebooks",
               f"--IdentityProvider.token={token}"]
    return command + (["--allow-root"] if as_root else [])


def ssh_tunnel(port: int) -> str:
    """The SSH port-forwarding command a learner runs on their own computer to reach ``port`` on the platform
    machine (used by serving)."""
    return f"ssh -CNg -L {port}:127.0.0.1:{port} root@<SSH 地址> -p <SSH 端口>"


def access_hints(ip: str, port: int, token: str) -> list[str]:
    """What the learner does to open the page, for this platform (printed before JupyterLab starts)."""
    url = f"http://127.0.0.1:{port}/lab/tree/notebooks?token={token}"
    tunnel = ssh_tunnel(port)
    hints = {
        "internstudio": [f"InternStudio: 在你自己电脑的终端运行（地址和端口见开发机的“SSH 连接”）：{tunnel}",
                         f"然后在自己电脑的浏览器打开 {url}"],
        "autodl": [f"AutoDL: 控制台 → 容器实例 → 自定义服务，打开 {AUTODL_SERVICE_PORT} 端口的地址，输入 token: {token}"
                   if port == AUTODL_SERVICE_PORT and ip == "0.0.0.0" else
                   f"AutoDL: 自定义服务只转发 {AUTODL_SERVICE_PORT} 端口，请用 make lab LAB_IP=0.0.0.0 LAB_PORT={AUTODL_SERVICE_PORT}；"
                   f"或在自己电脑上用 SSH 隧道：{tunnel}",
                   f"SSH 隧道时在自己电脑的浏览器打开 {url}"],
        "other": [f"本机：浏览器打开 {url}", f"远程机器：在自己电脑上运行 {tunnel}，再打开上面的地址"],
    }
    return [f"JupyterLab on {ip}:{port} (change with LAB_IP=... LAB_PORT=...); kernel: Python 3 (xtuner-course)",
            *hints[platforms.detect_platform()]]


def main(argv: list[str] | None = None) -> int:
    ip, port = default_address()
    parser = argparse.ArgumentParser(description="Start JupyterLab on the course's notebooks.")
    parser.add_argument("--ip", default=ip, help=f"address to listen on (default here: {ip})")
    parser.add_argument("--port", type=int, default=port, help=f"port (default here: {port})")
    args = parser.parse_args(argv)
    if not port_free(args.ip, args.port):
        print(f"Port {args.port} on {args.ip} is taken (the platform's own JupyterLab?). "
              f"Choose another: make lab LAB_PORT={args.port + 1}", file=sys.stderr)
        return 1
    token = os.environ.get("COURSE_LAB_TOKEN") or secrets.token_hex(16)
    for line in access_hints(args.ip, args.port, token):
        print(line, flush=True)
    command = lab_command(args.ip, args.port, token, as_root=os.geteuid() == 0)
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
