"""What this machine is: package versions, hardware, platform (AutoDL, InternStudio or other)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
from pathlib import Path

from . import files
from .models import AUTODL_DATA_DISK, INTERNSTUDIO_MODELS

PACKAGES = ("torch", "torchvision", "xtuner", "transformers", "mmengine", "peft", "bitsandbytes", "datasets",
            "deepspeed", "modelscope")
# The versions this course is tested with (torch: any working build; the platform's own on GPU clouds).
PINNED = {"xtuner": "0.2.0", "transformers": "4.48.0", "mmengine": "0.10.6", "peft": "0.21.2",
          "bitsandbytes": "0.48.2", "datasets": "5.0.1"}


def versions() -> list[dict]:
    """Python and the stack's package versions, each against the course's pin (00_environment)."""
    rows = [{"package": "python", "installed": platform.python_version(), "pinned": "3.10–3.12", "ok": (3, 10) <= sys.version_info[:2] <= (3, 12)}]
    for name in PACKAGES:
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        pinned = PINNED.get(name, "")
        ok = installed == pinned if pinned else True
        rows.append({"package": name, "installed": installed or "-", "pinned": pinned or "(any)", "ok": ok})
    return rows


def hardware(path: Path = Path(".")) -> dict:
    """CPU cores, RAM, free disk at ``path``, and the GPUs torch can see (00_environment)."""
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


def detect_platform() -> str:
    """``internstudio``, ``autodl`` or ``other``, from the folders each platform provides (00_environment)."""
    if INTERNSTUDIO_MODELS.is_dir():
        return "internstudio"
    if AUTODL_DATA_DISK.is_dir():
        return "autodl"
    return "other"
