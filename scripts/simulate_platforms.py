"""Simulate the GPU platforms' environments on this CPU machine and run the README's quick-start commands in each.

Usage: python scripts/simulate_platforms.py [--only internstudio,autodl,python313] [--keep DIR]

Each scenario builds, in a temporary folder standing in for ``/`` ($COURSE_PLATFORM_ROOT): the platform's folders
(/root/share/new_models or /root/autodl-tmp), a platform environment made from a real interpreter of the platform's
Python version, with the platform's torch in it, and a copy of this repository where the README clones it. Then,
with that environment first on PATH (as ``conda activate`` does), it runs the quick start's commands for real
(pip, the package index, the kernel registration, pre-flight) and reports the plan, torch before and after,
bitsandbytes, ``pip check`` and the pre-flight verdicts.

The platform's torch is a stand-in: a wheel built here with the real name and version (e.g. 2.1.2, a CUDA 12.1
build) whose module answers ``torch.__version__``, ``torch.version.cuda`` and ``torch.cuda.is_available()``.
Real CUDA builds are gigabytes and this machine has no GPU; what is under test is what pip and the install do
around that torch. Pre-flight checks that need a working torch (a 4-bit matmul, the xtuner CLI) fail against it,
as they do on any machine without a GPU for the gpu profile; the table says so.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from helpers import install, platforms  # noqa: E402

INTERNLM2_1_8B = "Shanghai_AI_Laboratory/internlm2-chat-1_8b"
QUICKSTART = ["make install", "make preflight PROFILE=gpu"]  # the README's platform quick starts, after `cd`


@dataclass
class Scenario:
    """One simulated platform environment."""

    name: str
    title: str
    python: str  # "3.10"
    torch: str | None = None
    torch_cuda: str | None = None
    torchvision: str | None = None
    numpy: str | None = None
    folders: list = field(default_factory=list)  # made under the fake root
    clone_to: str = "root/xtuner-course"  # where the README's quick start clones the course


SCENARIOS = [
    Scenario("internstudio", "InternStudio, studio-conda env: Python 3.10, torch 2.1.2 (CUDA 12.1) + torchvision "
             "0.16.2, numpy 1.26.4", "3.10", torch="2.1.2", torch_cuda="12.1", torchvision="0.16.2", numpy="1.26.4",
             folders=[f"root/share/new_models/{INTERNLM2_1_8B}"]),
    Scenario("autodl", "AutoDL image: Python 3.12, torch 2.4.1+cu121, no torchvision", "3.12", torch="2.4.1+cu121",
             torch_cuda="12.1", folders=["root/autodl-tmp"], clone_to="root/autodl-tmp/xtuner-course"),
    Scenario("python313", "Python 3.13 (outside 3.10-3.12)", "3.13"),
]


def find_python(version: str) -> str | None:
    """A real interpreter of ``version``: on PATH, or one of pyenv's."""
    for candidate in [shutil.which(f"python{version}"), *sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))]:
        if candidate and subprocess.run([str(candidate), "-c", "import sys"], capture_output=True).returncode == 0:
            return str(candidate)
    return None


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def stand_in_wheel(folder: Path, name: str, version: str, modules: dict[str, str]) -> Path:
    """A real wheel named ``name`` ``version`` holding ``modules`` (path -> source); pip installs it as usual."""
    info = f"{name}-{version.split('+')[0]}.dist-info"
    files = {**modules,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 "Summary: stand-in for a GPU platform's build (xtuner-course platform simulation)\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: xtuner-course\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        record = []
        for arcname, text in files.items():
            whl.writestr(arcname, text)
            record.append(_record_line(arcname, text.encode()))
        whl.writestr(f"{info}/RECORD", "\n".join(record + [f"{info}/RECORD,,"]) + "\n")
    return path


def torch_modules(version: str, cuda: str | None) -> dict[str, str]:
    return {"torch/__init__.py": f"__version__ = {version!r}\nfrom . import cuda, version\n",
            "torch/version.py": f"__version__ = {version!r}\ncuda = {cuda!r}\n",
            "torch/cuda/__init__.py": "def is_available():\n    return False\n\n\ndef device_count():\n    return 0\n"}


def tree_digest(site: Path, names: list[str]) -> str:
    """sha256 over every file (path and bytes) of the named folders in ``site``: equal means untouched."""
    digest = hashlib.sha256()
    for name in names:
        for path in sorted(p for p in site.glob(f"{name}*") for p in ([p] if p.is_file() else p.rglob("*"))):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(site)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def copy_repo(dest: Path) -> None:
    """The repository as a fresh clone has it (tracked and untracked-not-ignored files)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def run(command: str, cwd: Path, env: dict, log: Path) -> tuple[int, str]:
    """Run a shell command as the learner types it; returns exit status and output (also appended to ``log``)."""
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    with log.open("a") as f:
        f.write(f"$ {command}\n{out}\n[exit {proc.returncode}]\n")
    return proc.returncode, out


def simulate(s: Scenario, base: Path) -> dict:
    """Build one platform, run the quick start there, and collect what the closing table needs."""
    started = time.time()
    python = find_python(s.python)
    result = {"scenario": s.name, "environment": s.title, "log": str(base / "log.txt")}
    if python is None:
        return result | {"skipped": f"no Python {s.python} on this machine"}
    root = base / "fsroot"
    for folder in s.folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    platform_env = base / "platform-env"
    subprocess.run([python, "-m", "venv", str(platform_env)], check=True)
    env_python = str(platform_env / "bin" / "python")
    wheels = base / "wheels"
    wheels.mkdir()
    packages = []
    if s.torch:
        packages.append(str(stand_in_wheel(wheels, "torch", s.torch, torch_modules(s.torch, s.torch_cuda))))
    if s.torchvision:
        packages.append(str(stand_in_wheel(wheels, "torchvision", s.torchvision,
                                           {"torchvision/__init__.py": f"__version__ = {s.torchvision!r}\n"})))
    if s.numpy:
        packages.append(f"numpy=={s.numpy}")
    if packages:
        subprocess.run([env_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], check=True)
    site = Path(subprocess.run([env_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    before = tree_digest(site, ["torch", "numpy"])
    clone = root / s.clone_to
    copy_repo(clone)
    env = {**os.environ, "PATH": f"{platform_env / 'bin'}:{os.environ['PATH']}", platforms.ROOT_VAR: str(root),
           "JUPYTER_DATA_DIR": str(base / "jupyter"), "VIRTUAL_ENV": str(platform_env),
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))}
    for name in ("COURSE_WORKDIR", "COURSE_PROFILE", "PYTHON", "PYTHONPATH"):
        env.pop(name, None)
    log = base / "log.txt"
    steps = []
    for command in QUICKSTART:
        code, out = run(command, clone, env, log)
        steps.append({"command": command, "exit": code, "output": out})
        if command == "make install" and code != 0:
            break
    venv_python = clone / ".venv" / "bin" / "python"
    result |= {"python": python, "steps": steps, "torch_before": s.torch, "files_before": before,
               "files_after": tree_digest(site, ["torch", "numpy"]), "venv": venv_python.exists()}
    if venv_python.exists() and steps[0]["exit"] == 0:
        query = ("import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
                 "('torch', 'torchvision', 'bitsandbytes', 'numpy', 'xtuner')}))")
        result["after"] = json.loads(subprocess.run([str(venv_python), "-c", query], capture_output=True, text=True,
                                                    check=True).stdout)
        result["plan"] = json.loads((clone / ".venv" / install.PLAN_FILE).read_text())["plan"]
        check = subprocess.run([str(venv_python), "-m", "pip", "check"], capture_output=True, text=True)
        result["pip_check"] = [line for line in check.stdout.splitlines() if line.strip()]
        kernel = base / "jupyter" / "kernels" / install.KERNEL_NAME / "kernel.json"
        result["kernel_python"] = json.loads(kernel.read_text())["argv"][0] if kernel.is_file() else None
        result["venv_python"] = str(venv_python)
    result["seconds"] = round(time.time() - started)
    return result


def simulate_all(jobs: list[tuple[Scenario, Path]], workers: int = 2) -> list[dict]:
    """``simulate`` each (scenario, folder), ``workers`` at a time, results in the same order. Each scenario is
    mostly one single-threaded pip, so two run side by side on two cores in about the time of the longer one.
    One at a time while the shared wheelhouse lacks the llama.cpp wheel: two installs would both build it there."""
    if install._llama_files(install.wheelhouse())[0] is None:
        workers = 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: simulate(*job), jobs))


def preflight_rows(output: str) -> list[str]:
    """The [PASS]/[WARN]/[FAIL] lines of pre-flight's table."""
    return [line.strip() for line in output.splitlines() if line.strip().startswith(("[PASS]", "[WARN]", "[FAIL]"))]


def summary_row(r: dict) -> dict:
    """One line of the closing table: environment, plan, torch before/after, bitsandbytes, pre-flight."""
    if "skipped" in r:
        return {"environment": r["environment"], "plan": r["skipped"]}
    install_out = r["steps"][0]["output"]
    plan_lines = [line.strip(" -") for line in install_out.splitlines() if line.startswith(("   - ", "   ERROR", "ERROR"))]
    row = {"environment": r["environment"], "plan": " / ".join(plan_lines)[:400],
           "torch before -> after": f"{r['torch_before']} -> {r.get('after', {}).get('torch', '(not installed)')}"
                                    f"{' (files unchanged)' if r['files_before'] == r['files_after'] else ' (FILES CHANGED)'}",
           "bitsandbytes": r.get("after", {}).get("bitsandbytes", "-")}
    if len(r["steps"]) > 1:
        rows = preflight_rows(r["steps"][1]["output"])
        row["pre-flight"] = "; ".join(rows)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated scenario names")
    parser.add_argument("--keep", default=None, help="build the scenarios in this folder and keep them")
    parser.add_argument("--json", default=None, help="write the full results here")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    base = Path(args.keep or tempfile.mkdtemp(prefix="platform-sim-"))
    for s in chosen:
        print(f"== {s.name}: {s.title}", flush=True)
        (base / s.name).mkdir(parents=True, exist_ok=True)
    results = simulate_all([(s, base / s.name) for s in chosen])
    for r in results:
        print(json.dumps(summary_row(r), ensure_ascii=False, indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=1))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
