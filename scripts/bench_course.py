"""How fast the course runs on this machine, and how close training gets to the machine's own limit.

Prints, in one run:
- fp32 and bf16 matmul GFLOP/s (2048 x 2048, and the model's own MLP shape): the ceilings of a CPU training step;
- a LoRA training step of the course's config (built with XTuner's own builders, model and optimizer wrapper, as
  ``xtuner train`` builds them): s/step and GFLOP/s with XTuner's defaults and with each of the cpu profile's
  changes (no activation checkpointing, no LoRA dropout, bf16 autocast), each as a ratio of the fp32 matmul rate
  and of the matmul rate in the dtype it multiplies in;
- greedy generation tokens/s, batched and one prompt at a time (the helper that 00/01/06 use);
- xtuner's launcher: ``xtuner train --help`` against the Python it starts (``bench_launcher``);
- 00's unpack of the embedded GGUF: the model load as transformers does it and with gguf's tensor-name map built
  once (``helpers.models._gguf_name_map_built_once``), and their ratio;
- from the last ``make course`` in the working folder: each notebook's time and 04's split (start-up, evaluation
  hook, training iterations).

How FLOPs are counted (per step of T tokens): every linear layer (attention and MLP projections of all layers and the
output head) costs 2 * params * T forward and the same again backward (gradients flow through the frozen weights
to the inputs; frozen weights get no weight gradient); attention scores and the weighted sum cost 4 * T^2 * hidden
per layer forward (the full square, as the dense kernels compute it) and twice that backward; LoRA's own matrices
cost 6 * r * (in + out) * T per adapted layer. Recomputation under activation checkpointing is not counted: both
settings are credited the same work, so the ratio shows what recomputation costs. The work is the same in
every row; only the time differs.

Usage: .venv/bin/python scripts/bench_course.py [--workdir DIR] [--steps 6] [--skip-step] [--skip-generation] [--skip-unpack]
       [--skip-launcher]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def matmul_gflops(n: int = 2048, m: int | None = None, k: int | None = None, repeat: int = 20,
                  dtype: str = "float32") -> float:
    """GFLOP/s of an (n x k) @ (k x m) product in ``dtype``."""
    import torch

    m, k = m or n, k or n
    a, b = torch.randn(n, k, dtype=getattr(torch, dtype)), torch.randn(k, m, dtype=getattr(torch, dtype))
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n * m * k * repeat / (time.perf_counter() - start) / 1e9


def step_gflop(shape, tokens: int, lora_r: int, lora_layers_in_out: list[tuple[int, int]]) -> float:
    """Work of one training step (forward + backward) as described in the module docstring, in GFLOP."""
    linear = shape.linear_params + shape.vocab * shape.hidden  # the output head is a linear layer too
    forward = 2 * linear * tokens + 4 * tokens * tokens * shape.hidden * shape.layers
    backward = 2 * linear * tokens + 8 * tokens * tokens * shape.hidden * shape.layers
    lora = sum(6 * lora_r * (i + o) * tokens for i, o in lora_layers_in_out)
    return (forward + backward + lora) / 1e9


# The step settings compared: XTuner's own (recomputation, dropout, float32 on a CPU), then the cpu profile's
# changes one at a time. The last row is what the course trains with.
STEP_SETTINGS = [
    ("XTuner's defaults", dict(activation_checkpointing=True, lora_dropout=0.1, cpu_bf16_autocast=False)),
    ("no recomputation", dict(activation_checkpointing=False, lora_dropout=0.1, cpu_bf16_autocast=False)),
    ("+ no LoRA dropout", dict(activation_checkpointing=False, lora_dropout=0.0, cpu_bf16_autocast=False)),
    ("+ bf16 autocast (cpu profile)", dict(activation_checkpointing=False, lora_dropout=0.0, cpu_bf16_autocast=True)),
]


def course_config(workdir: Path, tmp: Path, name: str, **settings) -> Path:
    """The cpu profile's config for the base model in ``workdir``, with some profile settings changed."""
    from helpers import data, formats, profiles, workspace, xconfig

    ws = workspace.get_workspace(str(workdir))
    prof = profiles.get_profile("cpu", **settings)
    train_file = formats.write_jsonl(data.build_self_cognition("小智", "书生学员", 8), tmp / "train.jsonl", overwrite=True)
    copied = tmp / f"{prof.base_config}_copy.py"
    if not copied.exists():
        xconfig.copy_config(prof.base_config, tmp)
    edits = xconfig.course_edits(prof, ws.recall("base_model", "00"), train_file, "conversation", ["hi"])
    return xconfig.write_edited(copied, tmp / f"course_cpu_{name}.py", edits, overwrite=True)


def time_lora_step(config: Path, steps: int) -> dict:
    """Build the model and the optimizer wrapper as ``xtuner train`` does, and time what mmengine's train_step does
    (forward inside the wrapper's context, backward, gradient clipping, AdamW) on a packed random batch."""
    import torch
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from xtuner.registry import BUILDER

    cfg = Config.fromfile(str(config))  # runs the config's CPU adaptations (flush denormals, ...)
    torch.manual_seed(0)
    model = BUILDER.build(cfg.model)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    tokens = cfg.max_length
    ids = torch.randint(100, model.llm.config.vocab_size - 100, (1, tokens))
    batch = dict(input_ids=ids, labels=ids.clone(), attention_mask=torch.ones_like(ids))

    def step():
        with optim_wrapper.optim_context(model):
            loss = model(batch, mode="loss")["loss"]
        optim_wrapper.update_params(loss)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    adapted = [(m.in_features, m.out_features) for n, m in model.llm.named_modules()
               if n.endswith(".base_layer") and hasattr(m, "in_features")]
    return {"seconds": seconds, "tokens": tokens, "lora_r": cfg.model.lora.r, "adapted": adapted}


def bench_step(workdir: Path, steps: int, matmul: dict) -> list[dict]:
    from helpers import cpu_amp, estimate, workspace

    shape = estimate.shape_from_config(workspace.get_workspace(str(workdir)).recall("base_model", "00"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, settings) in enumerate(STEP_SETTINGS):
            timed = time_lora_step(course_config(workdir, Path(tmp), str(i), **settings), steps)
            work = step_gflop(shape, timed["tokens"], timed["lora_r"], timed["adapted"])
            bf16 = settings["cpu_bf16_autocast"] and cpu_amp.native_bf16()
            rows.append({"setting": name, "s/step": round(timed["seconds"], 2), "GFLOP/step": round(work, 1),
                         "GFLOP/s": round(work / timed["seconds"], 1),
                         "ratio to fp32 matmul": round(work / timed["seconds"] / matmul["float32"], 2),
                         "ratio to matmul in its dtype": round(
                             work / timed["seconds"] / matmul["bfloat16" if bf16 else "float32"], 2),
                         "tokens/s": round(timed["tokens"] / timed["seconds"], 1)})
    return rows


def bench_generation(workdir: Path, max_new_tokens: int) -> list[dict]:
    """tokens/s of ``chat.generate_answers``: the evaluation questions all at once vs one by one, with torch's
    default thread count and with one thread (decoding one token runs small matrices, where threads may cost more
    than they give); and 01's self-distillation (44 prompts, twice the tokens) in one batch (the default) vs
    batches of 16, with whether the greedy answers are the same."""
    import torch

    from helpers import chat, data, workspace

    ws = workspace.get_workspace(str(workdir))
    model = chat.load_chat_model(ws.recall("base_model", "00"), device="cpu")
    template = ws.read_state().get("prompt_template", "qwen_chat")
    questions = [q["question"] for q in data.load_eval_questions()] + data.load_general_prompts()[:11]
    default_threads = torch.get_num_threads()
    runs = [("eval + 11 general", questions, threads, batch_size, max_new_tokens)
            for threads in sorted({default_threads, 1}, reverse=True) for batch_size in (len(questions), 1)]
    runs += [("01: 44 general", data.load_general_prompts(), default_threads, batch_size, 2 * max_new_tokens)
             for batch_size in (64, 16)]
    rows, first_answers = [], {}
    for name, prompts, threads, batch_size, tokens in runs:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        answers = chat.generate_answers(model, prompts, template, max_new_tokens=tokens, batch_size=batch_size)
        seconds = time.perf_counter() - start
        new_tokens = sum(len(model.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
        rows.append({"prompts": name, "threads": threads, "batch size": batch_size, "max_new_tokens": tokens,
                     "seconds": round(seconds, 1), "answer tokens": new_tokens,
                     "tokens/s": round(new_tokens / seconds, 1),
                     "same answers as the first run": answers == first_answers.setdefault(name, answers)})
    torch.set_num_threads(default_threads)
    return rows


STAMP = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) - mmengine - INFO - (.*)$")


def bench_unpack() -> list[dict]:
    """Load the embedded GGUF into a transformers model twice: as transformers does, and as 00 does."""
    import contextlib

    import torch
    from transformers import AutoModelForCausalLM

    from helpers import models

    gguf = models._find_smollm2_gguf()
    rows, weights = [], []
    for how, context in (("as transformers does", contextlib.nullcontext),
                         ("tensor-name map built once (00)", models._gguf_name_map_built_once)):
        start = time.perf_counter()
        with context():
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.bfloat16)
        rows.append({"GGUF model load": how, "s": round(time.perf_counter() - start, 1)})
        weights.append(model.state_dict())
    rows[1]["ratio"] = round(rows[1]["s"] / rows[0]["s"], 2)
    rows[1]["same weights"] = all(torch.equal(a, b) for a, b in zip(weights[0].values(), weights[1].values()))
    return rows


def bench_launcher(repeat: int = 2) -> list[dict]:
    """``xtuner train --help`` against the ``python .../xtuner/tools/train.py --help`` it starts: xtuner's launcher
    imports the whole tool module only to learn its file name, then starts a second Python that imports it again.
    The difference is what every ``xtuner`` command of the course pays before its tool starts."""
    import importlib.util
    import subprocess

    from helpers import cli

    tool = importlib.util.find_spec("xtuner.tools.train").origin  # the file, without importing the module
    commands = {"xtuner train --help": cli.xtuner_command("train", "--help"),
                "python xtuner/tools/train.py --help (what it starts)": [sys.executable, tool, "--help"]}
    rows = []
    for name, command in commands.items():
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run(command, env=cli.xtuner_env(), capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        rows.append({"command": name, "seconds (best run)": round(min(times), 1)})
    launcher, tool_alone = (row["seconds (best run)"] for row in rows)
    rows.append({"command": "the launcher's own share", "seconds (best run)": round(launcher - tool_alone, 1)})
    return rows


def split_training_log(log: Path) -> dict:
    """Seconds of one ``xtuner train`` run's log: preparing (log start to the first hook), evaluation hook, iterations."""
    events = [(datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S"), m.group(2))
              for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if (m := STAMP.match(line))]
    if not events:
        return {}
    hook, prepare_end, evaluating = 0.0, None, None
    for (when, text), (after, _) in zip(events, events[1:] + events[-1:]):
        if "in EvaluateChatHook" in text and "skipped" not in text:
            evaluating = when
            prepare_end = prepare_end or when
        elif evaluating and not text.startswith("Sample output"):
            hook += (when - evaluating).total_seconds()
            evaluating = None
        if prepare_end is None and text.startswith("Iter(train)"):
            prepare_end = when
    if evaluating:
        hook += (events[-1][0] - evaluating).total_seconds()
    total = (events[-1][0] - events[0][0]).total_seconds()
    prepare = ((prepare_end or events[-1][0]) - events[0][0]).total_seconds()
    return {"logged": total, "preparing data": prepare, "evaluation hook": hook}


def course_figures(workdir: Path) -> dict:
    """Each notebook's time (course report) and 04's split (its logs and training summary)."""
    from helpers import monitor, workspace

    ws = workspace.get_workspace(str(workdir))
    figures = {"notebooks": [], "04": []}
    report = ws.reports / "course_report.md"
    if report.is_file():
        figures["notebooks"] = re.findall(r"^\| (\S+\.ipynb|total) \| ([\d.]+) \|$", report.read_text(), re.M)
    summary_file = ws.reports / "training_summary.json"
    work_dir = ws.read_state().get("work_dir")
    if not (summary_file.is_file() and work_dir):
        return figures
    summary = json.loads(summary_file.read_text())
    iteration_time = {r["iter"]: r.get("time", 0.0) for r in monitor.read_scalars(Path(work_dir))}
    walls = summary.get("run_seconds", [])
    for i, run in enumerate(monitor.run_dirs(Path(work_dir))):
        split = split_training_log(run / f"{run.name}.log")
        rows = [r for r in _scalars_of(run)]
        split["iterations"] = round(sum(iteration_time.get(r, 0.0) for r in rows), 1)
        split["n iterations"] = len(rows)
        if i < len(walls):
            split["wall"] = round(walls[i], 1)
            split["start-up (before the log)"] = round(walls[i] - split["logged"], 1)
        figures["04"].append({"run": run.name, **split})
    figures["s/iter"] = summary.get("seconds_per_iter")
    return figures


def _scalars_of(run: Path) -> list[int]:
    path = run / "vis_data" / "scalars.json"
    if not path.is_file():
        return []
    return [json.loads(line)["iter"] for line in path.read_text().splitlines() if '"loss"' in line]


def show(title: str, rows) -> None:
    from helpers.course import md_table

    print(f"\n## {title}\n")
    print(md_table(rows) if rows and isinstance(rows, list) and isinstance(rows[0], dict) else rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None, help="the working folder of a finished `make course` (default: ./workspace)")
    parser.add_argument("--steps", type=int, default=6, help="timed LoRA steps per setting")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-unpack", action="store_true")
    parser.add_argument("--skip-launcher", action="store_true")
    args = parser.parse_args(argv)
    import torch

    from helpers import workspace

    workdir = workspace.get_workspace(args.workdir).root
    print(f"# Course benchmark: {workdir}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    matmul = {dtype: matmul_gflops(dtype=dtype) for dtype in ("float32", "bfloat16")}
    show("matmul", [{"dtype": dtype, "shape": shape, "GFLOP/s": round(gflops, 1)} for dtype in matmul
                    for shape, gflops in (("2048x2048 @ 2048x2048", matmul[dtype]),
                                          ("256x576 @ 576x1536", matmul_gflops(256, 1536, 576, 200, dtype)))])
    if not args.skip_step:
        show("LoRA training step (cpu profile's config, XTuner's builder)", bench_step(workdir, args.steps, matmul))
    if not args.skip_generation:
        show("Greedy generation", bench_generation(workdir, args.max_new_tokens))
    if not args.skip_unpack:
        show("00: unpacking the embedded GGUF", bench_unpack())
    if not args.skip_launcher:
        show("xtuner's launcher (every xtuner command starts two Pythons)", bench_launcher())
    figures = course_figures(workdir)
    show("Notebooks (last make course)", [{"notebook": n, "seconds": float(s)} for n, s in figures["notebooks"]])
    show(f"04's xtuner train runs (s/iter {figures.get('s/iter')})", figures["04"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
