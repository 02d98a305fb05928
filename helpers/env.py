"""What this machine is: package versions, hardware, platform (AutoDL, InternStudio or other)."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

from . import files, install

PACKAGES = ("torch", "torchvision", "xtuner", "transformers", "mmengine", "peft", "bitsandbytes", "datasets",
            "deepspeed", "modelscope")


def pinned() -> dict[str, str]:
    """The versions this course is tested with; bitsandbytes depends on the torch that is here (used by preflight)."""
    return {**install.STACK, "bitsandbytes": install.bitsandbytes_for(install.installed_version("torch") or "")}


def versions() -> list[dict]:
    """Python and the stack's package versions, each against the course's pin (00_environment_and_base_model)."""
    rows = [{"package": "python", "installed": platform.python_version(), "pinned": "3.10–3.12", "ok": (3, 10) <= sys.version_info[:2] <= (3, 12)}]
    pins = pinned()
    for name in PACKAGES:
        installed = install.installed_version(name)
        pinned_version = pins.get(name, "")
        ok = installed == pinned_version if pinned_version else True
        rows.append({"package": name, "installed": installed or "-", "pinned": pinned_version or "(any)", "ok": ok})
    return rows


def hardware(path: Path = Path(".")) -> dict:
    """CPU cores, RAM, free disk at ``path``, and the GPUs torch can see (00_environment_and_base_model)."""
    import torch

    info = {"cpu_cores": os.cpu_count(), "ram_gb": round(_ram_bytes() / 1e9, 1),
            "free_disk_gb": round(files.free_disk_gb(path), 1), "torch_cuda_build": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "gpus": []}
    for i in range(torch.cuda.device_count() if info["cuda_available"] else 0):
        props = torch.cuda.get_device_properties(i)
        info["gpus"].append(f"{props.name} ({props.total_memory / 2**30:.0f} GiB)")
    info["nvidia_smi"] = shutil.which("nvidia-smi") is not None
    return info


def _ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
