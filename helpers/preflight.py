"""Pre-flight: will this machine run the course? A pass/warn/fail table with the fix for every failure.

Instructors: ``python -m helpers.preflight --profile gpu`` on every workshop machine (exit status 1 on a failure).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir

from . import cli, env, files, install, platforms
from .estimate import OVERHEAD_GB, shape_from_config
from .install import nvidia_driver_cuda
from .profiles import Profile, get_profile
from .workspace import get_workspace

DOCS = "docs/troubleshooting.md"
KNOWN_SHAPES = {  # params of the profiles' default models, for sizing before the model is on disk
    "smollm2": 134.5e6, "tiny": 0.5e6, "Shanghai_AI_Laboratory/internlm2-chat-1_8b": 1.89e9,
}


@dataclass
class Check:
    """One line of the pre-flight table."""

    name: str
    status: str  # "pass", "warn" or "fail"
    detail: str
    fix: str = ""


def check_python() -> Check:
    """xtuner 0.2.0 needs Python 3.10–3.12."""
    version = ".".join(map(str, sys.version_info[:3]))
    if (3, 10) <= sys.version_info[:2] <= (3, 12):
        return Check("python", "pass", version)
    return Check("python", "fail", version, f"Use Python 3.11 (conda create -n xtuner-course python=3.11). {DOCS}#5")


def check_torch(profile: Profile) -> Check:
    """torch imports, and sees the GPU when the driver has one."""
    try:
        import torch
    except Exception as exc:  # a broken torch raises more than ImportError
        return Check("torch", "fail", f"import failed: {exc}", "Run `make install` (torch 2.14.1 + torchvision 0.29.1).")
    detail = f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    driver = nvidia_driver_cuda()
    if torch.cuda.is_available():
        return Check("torch", "pass", f"{detail}, GPU visible (driver CUDA {driver or '?'})")
    if driver and torch.version.cuda and install.version_tuple(torch.version.cuda) > install.version_tuple(driver):
        return Check("torch", "fail", f"{detail}: built for a newer CUDA than the driver supports ({driver})",
                     f"Use a torch built for CUDA <= {driver}: the platform's own (remove .venv and run `make install` "
                     f"inside the platform's environment; it never replaces a torch that is there). {DOCS}#21")
    if driver:
        return Check("torch", "fail", f"{detail}; nvidia-smi shows a GPU (driver CUDA {driver}) that torch cannot see",
                     f"Install a torch built for CUDA <= {driver}, or keep the platform's torch "
                     f"(create the venv from the platform's Python). {DOCS}#6")
    if profile.device == "cuda":
        return Check("torch", "fail", f"{detail}; no GPU on this machine", "Use the cpu profile: COURSE_PROFILE=cpu.")
    return Check("torch", "pass", f"{detail}, CPU only")


def check_bitsandbytes(profile: Profile) -> Check:
    """A real 4-bit (nf4) matmul on a tiny tensor, on the profile's device."""
    if profile.method != "qlora":
        return Check("bitsandbytes", "pass", "not needed (plain LoRA)")
    try:
        import bitsandbytes as bnb
        import torch

        layer = bnb.nn.Linear4bit(64, 32, bias=False, compute_dtype=torch.float32, quant_type="nf4").to(profile.device)
        out = layer(torch.randn(2, 64, device=profile.device))
        assert out.shape == (2, 32) and layer.weight.dtype == torch.uint8
    except Exception as exc:
        return Check("bitsandbytes", "fail", f"4-bit matmul on {profile.device} failed: {str(exc)[:160]}",
                     f"`python -m bitsandbytes` diagnoses it; on CPU install bitsandbytes==0.48.2. {DOCS}#6")
    return Check("bitsandbytes", "pass", f"{importlib.metadata.version('bitsandbytes')}: nf4 works on {profile.device}")


def check_xtuner_cli() -> Check:
    """``xtuner`` is beside this Python and runs."""
    command = cli.xtuner_command("version")
    if command[0] == "xtuner" and not shutil.which("xtuner"):
        return Check("xtuner CLI", "fail", "xtuner is not on PATH", f"Run `make install`. {DOCS}#15")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=120, env=cli.xtuner_env()).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("xtuner CLI", "fail", str(exc), f"Reinstall with `make install`. {DOCS}#5")
    if "0.2.0" not in out:
        return Check("xtuner CLI", "fail", f"`xtuner version` printed {out.strip()[-80:]!r}",
                     f"pip install xtuner==0.2.0 (never XTuner's git main). {DOCS}#1")
    return Check("xtuner CLI", "pass", f"{command[0]} -> 0.2.0")


def check_pins() -> Check:
    """transformers, mmengine, peft and friends at the versions the course is tested with."""
    pins = env.pinned()
    wrong = [f"{r['package']} {r['installed']} (want {r['pinned']})" for r in env.versions()
             if r["package"] in pins and not r["ok"]]
    if wrong:
        return Check("pinned versions", "fail", "; ".join(wrong), f"Run `make install` to install the pins. {DOCS}#2")
    return Check("pinned versions", "pass", ", ".join(f"{k} {v}" for k, v in pins.items()))


def check_deepspeed(profile: Profile) -> Check:
    """DeepSpeed and mpi4py, only when the profile trains with DeepSpeed."""
    if not profile.deepspeed:
        return Check("deepspeed", "pass", "not used by this profile")
    missing = [m for m in ("deepspeed", "mpi4py") if importlib.util.find_spec(m) is None]
    if missing:
        return Check("deepspeed", "fail", f"missing: {', '.join(missing)}",
                     f"pip install deepspeed mpi4py (conda install mpi4py if it segfaults). {DOCS}#7")
    return Check("deepspeed", "pass", f"deepspeed {importlib.metadata.version('deepspeed')}, mpi4py present")


def check_install(python_prefix: Path | None = None) -> list[Check]:
    """torch and bitsandbytes are still what `make install` planned, and torchvision imports."""
    plan_file = Path(python_prefix or sys.prefix) / install.PLAN_FILE
    if not plan_file.is_file():
        return [Check("install plan", "warn", f"no {plan_file}: this environment was not made by `make install`",
                      "Run `make install` (it prints its plan and keeps the platform's torch).")]
    plan = json.loads(plan_file.read_text())["plan"]
    now = {name: install.installed_version(name) for name in ("torch", "bitsandbytes")}
    moved = [f"{name} {plan[name]} -> {now[name]}" for name in now if now[name] != plan[name]]
    if moved:
        return [Check("install plan", "fail", f"changed since `make install`: {'; '.join(moved)}",
                      f"A pip install without the course's constraints replaced them: remove .venv and run "
                      f"`make install` again in the platform's environment. {DOCS}#21")]
    checks = [Check("install plan", "pass", f"torch {now['torch']} kept as planned; bitsandbytes {now['bitsandbytes']} "
                    f"({'CPU and GPU 4-bit' if now['bitsandbytes'] == install.BNB_CPU_4BIT else 'GPU-only 4-bit: torch < 2.3'})")]
    try:
        import torchvision  # noqa: F401  (xtuner imports it)
    except Exception as exc:
        checks.append(Check("torchvision", "fail", f"import failed: {str(exc)[:160]}",
                            f"Install the torchvision built for this torch ({plan['torchvision']}). {DOCS}#19"))
    return checks


def check_kernel() -> Check:
    """The Jupyter kernel ``xtuner-course`` exists for this user and runs this environment's Python."""
    spec = Path(jupyter_data_dir()) / "kernels" / install.KERNEL_NAME / "kernel.json"
    fix = (f"Run `make install`, or `{sys.executable} -m ipykernel install --user --name {install.KERNEL_NAME} "
           f"--display-name \"{install.KERNEL_DISPLAY_NAME}\"`.")
    if not spec.is_file():
        return Check("jupyter kernel", "fail", f"no kernel {install.KERNEL_NAME!r} in {spec.parent.parent}", fix)
    python = json.loads(spec.read_text())["argv"][0]
    if Path(python).absolute() != Path(sys.executable).absolute():
        return Check("jupyter kernel", "warn", f"{install.KERNEL_NAME!r} runs {python}, not this environment's "
                     f"{sys.executable} (another copy of the course?)", fix)
    return Check("jupyter kernel", "pass", f"'{install.KERNEL_DISPLAY_NAME}' -> {python}")


def model_params(profile: Profile, model_path: str | None = None) -> float:
    """Parameter count of the base model: from its config.json when on disk, else the profile's known model."""
    if model_path and (Path(model_path) / "config.json").is_file():
        return shape_from_config(model_path).params
    return KNOWN_SHAPES.get(profile.model, 7.7e9)


def resource_needs(profile: Profile, params: float) -> dict:
    """GB of disk (download, merge) and RAM (training on CPU, merge) this profile needs."""
    model_gb = params * 2 / 1e9  # bf16/fp16 on disk
    download = 0.0 if profile.model in ("smollm2", "tiny") else model_gb
    merge_ram = model_gb * 1.2  # the merge holds the fp16 model in RAM
    train_ram = OVERHEAD_GB["cpu"] + params * 4 * 2.5 / 1e9 if profile.device == "cpu" else 0.0  # fp32 on CPU
    return {"download_gb": round(download, 2), "merge_disk_gb": round(model_gb * 1.1, 2),
            "checkpoints_gb": round(max(0.05, model_gb * 0.02), 2), "ram_gb": round(max(train_ram, merge_ram), 1)}


def check_resources(profile: Profile, workdir: Path, params: float) -> list[Check]:
    """Free disk for download + merge + checkpoints, and RAM for training on CPU and for the merge."""
    need = resource_needs(profile, params)
    disk_need = need["download_gb"] + need["merge_disk_gb"] + need["checkpoints_gb"]
    free = files.free_disk_gb(workdir)
    ram = env.hardware(workdir)["ram_gb"]
    disk = Check("disk", "pass" if free >= disk_need else "fail",
                 f"{free:.1f} GB free at {workdir}; needs {disk_need:.1f} GB "
                 f"(download {need['download_gb']}, merge {need['merge_disk_gb']}, checkpoints {need['checkpoints_gb']})",
                 "" if free >= disk_need else f"Free space or set COURSE_WORKDIR to a bigger disk (AutoDL: /root/autodl-tmp). {DOCS}#11")
    if disk.status == "pass" and platforms.detect_platform() == "autodl" and not platforms.on_data_disk(workdir):
        disk = Check("disk", "warn", f"{disk.detail}; this is AutoDL's small system disk",
                     f"Clone the course into {platforms.autodl_data_disk()} or set COURSE_WORKDIR there.")
    memory = Check("RAM", "pass" if ram >= need["ram_gb"] else "warn", f"{ram} GB; needs about {need['ram_gb']} GB",
                   "" if ram >= need["ram_gb"] else f"Close other programs or use a smaller model. {DOCS}#11")
    return [disk, memory]


def check_mkl() -> Check:
    """MKL settings for convert/merge: the course sets them; a conflicting value in the shell is flagged."""
    layer = os.environ.get("MKL_THREADING_LAYER")
    if layer and layer.upper() != "GNU":
        return Check("MKL", "warn", f"MKL_THREADING_LAYER={layer} in this shell",
                     f"export MKL_SERVICE_FORCE_INTEL=1 MKL_THREADING_LAYER=GNU before xtuner convert. {DOCS}#10")
    return Check("MKL", "pass", "the course runs xtuner with MKL_SERVICE_FORCE_INTEL=1 MKL_THREADING_LAYER=GNU")


def modelscope_reachable(timeout: float = 3.0) -> bool:
    """Whether the ModelScope hub answers (a TCP connection, nothing downloaded)."""
    try:
        socket.create_connection(("modelscope.cn", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_platform(profile: Profile, model_path: str | None = None) -> Check:
    """AutoDL / InternStudio / other, and whether the base model can be had."""
    shared = platforms.internstudio_models()
    name = platforms.detect_platform()
    notes = {"internstudio": f"models in {shared}", "autodl": f"data disk {platforms.autodl_data_disk()}",
             "other": "no platform conventions"}
    detail = f"{name}: {notes[name]}"
    if profile.model in ("smollm2", "tiny") or model_path:
        return Check("platform", "pass", f"{detail}; base model is local")
    if (shared / profile.model).is_dir():
        return Check("platform", "pass", f"{detail}; {profile.model} is in the shared folder")
    if modelscope_reachable():
        return Check("platform", "pass", f"{detail}; ModelScope reachable for {profile.model}")
    return Check("platform", "fail", f"{detail}; {profile.model} is not local and ModelScope is unreachable",
                 f"Download the model elsewhere and pass model_path=... (folder name without '.'). {DOCS}#15")


def run_checks(profile: Profile, workdir: Path, model_path: str | None = None) -> list[Check]:
    """Every pre-flight check for ``profile`` (00_environment_and_base_model)."""
    checks = [check_python(), check_torch(profile), *check_install(), check_bitsandbytes(profile), check_xtuner_cli(),
              check_pins(), check_deepspeed(profile), check_kernel()]
    checks += check_resources(profile, workdir, model_params(profile, model_path))
    return checks + [check_mkl(), check_platform(profile, model_path)]


def render(checks: list[Check]) -> str:
    """The table as text, one check a line, fixes under failures (00_environment_and_base_model)."""
    marks = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for c in checks:
        lines.append(f"[{marks[c.status]}] {c.name:<16} {c.detail}")
        if c.fix:
            lines.append(f"       fix: {c.fix}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pre-flight check for the xtuner course.")
    parser.add_argument("--profile", default=None, help="tiny, cpu or gpu (default: $COURSE_PROFILE or auto)")
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    checks = run_checks(get_profile(args.profile), get_workspace(args.workdir).root, args.model_path)
    print(render(checks))
    failed = [c.name for c in checks if c.status == "fail"]
    print(f"\n{len(checks) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def as_rows(checks: list[Check]) -> list[dict]:
    """The checks as dicts, for a pandas table in the notebook (00_environment_and_base_model)."""
    return [asdict(c) for c in checks]


if __name__ == "__main__":
    sys.exit(main())
