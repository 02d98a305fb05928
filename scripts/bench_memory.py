"""Measure the peak memory of real `xtuner train` runs on this machine and compare with helpers.estimate.

Writes docs/memory_measurements.json and prints a Markdown table (estimated vs measured) for docs/memory.md.
Usage: .venv/bin/python scripts/bench_memory.py [--iters 4] [--out docs/memory_measurements.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = [  # (profile, method, max_length, batch_size)
    ("tiny", "qlora", 256, 1),
    ("cpu", "lora", 256, 1),
    ("cpu", "qlora", 256, 1),
    ("cpu", "lora", 512, 1),
    ("cpu", "lora", 512, 4),
    ("cpu", "lora", 1024, 2),
]


def measure_one(profile_name: str, method: str, max_length: int, batch_size: int, iters: int, root: Path) -> dict:
    """Train for a few iterations in this process's child and return estimated and measured peak memory."""
    from helpers import data, estimate, formats, models, monitor, profiles, training, xconfig

    prof = profiles.get_profile(profile_name, method=method, max_length=max_length, batch_size=batch_size,
                                max_iters=iters, save_steps=iters, evaluation_freq=iters, max_new_tokens=4,
                                warmup_iters=2)
    base = models.prepare_base_model(prof, root / "models")
    records = data.build_self_cognition("小智", "书生学员", 160) + [
        formats.conversation_record(q, "A short general answer. " * 8) for q in data.load_general_prompts()]
    train_file = formats.write_jsonl(records, root / f"data_{profile_name}_{method}_{max_length}_{batch_size}.jsonl")
    copied = root / f"{prof.base_config}_copy.py"
    if not copied.exists():
        xconfig.copy_config(prof.base_config, root)
    config = xconfig.write_edited(copied, root / f"cfg_{train_file.stem}.py",
                                  xconfig.course_edits(prof, base, train_file, "conversation", ["hi"]), overwrite=True)
    result = training.train(config, root / f"work_{train_file.stem}", progress=False, live=False)
    setup = estimate.Setup(method=method, lora_r=prof.lora_r, max_length=max_length, batch_size=batch_size, device="cpu")
    shape = estimate.shape_from_config(base)
    estimated = estimate.estimate_memory(shape, setup)["total"]
    return {"profile": profile_name, "model": prof.model, "shape": dataclasses.asdict(shape), "method": method,
            "max_length": max_length,
            "batch_size": batch_size, "lora_r": prof.lora_r, "estimated_gb": estimated,
            "measured_gb": result.peak_rss_gb, "seconds_per_iter": monitor.loss_summary(
                monitor.read_scalars(result.work_dir), window=1)["seconds_per_iter"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--out", default="docs/memory_measurements.json")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child: one setting, so that the peak memory of its children is this run's alone
        print("RESULT " + json.dumps(measure_one(*json.loads(args.one), args.iters, Path(args.root))))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as root:
        for setting in SETTINGS:
            out = subprocess.run([sys.executable, __file__, "--one", json.dumps(setting), "--root", root,
                                  "--iters", str(args.iters)], capture_output=True, text=True)
            line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{setting} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
            rows.append(json.loads(line[7:]))
            r = rows[-1]
            print(f"{r['model']:8s} {r['method']:5s} len {r['max_length']:5d} batch {r['batch_size']}: "
                  f"estimated {r['estimated_gb']:.2f} GB, measured {r['measured_gb']:.2f} GB, "
                  f"ratio {r['measured_gb'] / r['estimated_gb']:.2f}, {r['seconds_per_iter']} s/iter", flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| model | method | max_length | batch | estimated GB | measured GB | measured / estimated | s/iter |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['method']} | {r['max_length']} | {r['batch_size']} | {r['estimated_gb']:.2f} | "
              f"{r['measured_gb']:.2f} | {r['measured_gb'] / r['estimated_gb']:.2f} | {r['seconds_per_iter']} |")


if __name__ == "__main__":
    main()
