"""After training: ``xtuner convert pth_to_hf`` and ``xtuner convert merge``, checked and verified."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from . import chat, cli, files


class DiskSpaceError(OSError):
    """Raised before a conversion that would not fit on the disk."""


def _check_free_disk(target: Path, needed_gb: float, what: str) -> None:
    """Fail before writing ``needed_gb`` if the disk holding ``target`` has less free."""
    free = files.free_disk_gb(target)
    if free < needed_gb:
        raise DiskSpaceError(
            f"{what} needs about {needed_gb:.1f} GB but only {free:.1f} GB is free at {target}. "
            "Delete old work_dirs/merged folders, or use a bigger data disk (on AutoDL: /root/autodl-tmp; "
            "docs/troubleshooting.md#11)."
        )


def _convert_into(out_dir: Path, overwrite: bool, args_for, expect: str, what: str) -> Path:
    """Run a converter into a temporary folder beside ``out_dir`` and move it into place when it produced ``expect``."""
    out_dir = files.check_writable(Path(out_dir), overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        print(f"# 先写入临时文件夹 {tmp.name}/，成功后改名为 {out_dir.name}/（失败时不留下不完整的 {out_dir.name}/）")
        run = cli.run_xtuner(*args_for(tmp), env=cli.MKL_ENV)  # MKL shown: convert and merge need it on some platforms
        cli.require(any(tmp.glob(expect)), run, f"{what} ({expect} in {out_dir})")
        return files.replace_dir(tmp, out_dir, overwrite=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pth_to_hf(config: Path, checkpoint: Path, out_dir: Path, overwrite: bool = False) -> Path:
    """``xtuner convert pth_to_hf CONFIG CKPT OUT``: the LoRA adapter in Hugging Face format (05_convert_merge)."""
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"Checkpoint {checkpoint} does not exist. Run notebook 04 first.")
    _check_free_disk(Path(out_dir).parent, files.dir_size_gb(checkpoint) + 0.1, "pth_to_hf")
    return _convert_into(out_dir, overwrite, lambda tmp: ["convert", "pth_to_hf", str(config), str(checkpoint), str(tmp)],
                         "adapter_config.json", "a LoRA adapter")


def merge(base_model: Path, adapter: Path, out_dir: Path, device: str = "cpu", overwrite: bool = False) -> Path:
    """``xtuner convert merge BASE ADAPTER OUT``: a standalone fp16 model with the adapter merged in (05_convert_merge)."""
    for path, what in ((base_model, "base model"), (adapter, "adapter")):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"The {what} folder {path} does not exist. Run the earlier steps first.")
    _check_free_disk(Path(out_dir).parent, files.dir_size_gb(base_model) * 1.1 + 0.1, "merge")
    args = lambda tmp: ["convert", "merge", str(base_model), str(adapter), str(tmp), "--max-shard-size", "2GB",
                        "--safe-serialization", "--device", device]
    return _convert_into(out_dir, overwrite, args, "*.safetensors", "merged weights")


def verify_merge(base_model: Path, adapter: Path, merged: Path, questions: list[str], template: str,
                 max_new_tokens: int = 32, trust_remote_code: bool = False) -> list[dict]:
    """Greedy answers of base+adapter and of the merged model, side by side, with ``same`` (05_convert_merge)."""
    with_adapter = chat.load_chat_model(base_model, adapter=adapter, trust_remote_code=trust_remote_code)
    a = chat.generate_answers(with_adapter, questions, template, max_new_tokens=max_new_tokens)
    del with_adapter
    merged_model = chat.load_chat_model(merged, trust_remote_code=trust_remote_code)
    b = chat.generate_answers(merged_model, questions, template, max_new_tokens=max_new_tokens)
    return [{"question": q, "base+adapter": x, "merged": y, "same": x == y} for q, x, y in zip(questions, a, b)]


def _weight_files(model_dir: Path) -> dict[str, Path]:
    """Each weight's name -> the file that holds it (safetensors or .bin, sharded or not)."""
    model_dir = Path(model_dir)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = model_dir / index_name
        if index.is_file():
            return {k: model_dir / v for k, v in json.loads(index.read_text())["weight_map"].items()}
    single = next((p for p in (model_dir / "model.safetensors", model_dir / "pytorch_model.bin") if p.is_file()), None)
    if single is None:
        raise FileNotFoundError(f"{model_dir} has no model.safetensors / pytorch_model.bin (or their index).")
    return {name: single for name in _load_weights(single)}


def _load_weights(path: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    return load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu", mmap=True)


def changed_weights(base_model: Path, merged: Path) -> dict[str, bool]:
    """For every weight the two models share: did merging change it? Compared in float16, as merge saves them, one
    file at a time (05_convert_merge)."""
    import torch

    base_files, merged_files = _weight_files(base_model), _weight_files(merged)
    changed = {}
    for merged_file in sorted(set(merged_files.values())):
        merged_weights = _load_weights(merged_file)
        for base_file in sorted({base_files[n] for n in merged_weights if n in base_files}):
            for name, base in _load_weights(base_file).items():
                if name in merged_weights:
                    changed[name] = not torch.equal(base.to(torch.float16), merged_weights[name].half())
    return dict(sorted(changed.items()))
