"""Draw the course's explanatory figures into images/ from the course's own code, so that they stay true.

Usage: .venv/bin/python scripts/draw_figures.py [--out DIR] [--check] [NAME ...]   (default: every figure, into images/)

Figures (each embedded in a notebook; tests/test_figures.py checks they are referenced and up to date):
  pipeline       the course's stages and notebooks: data, config, train, convert, merge, chat, evaluate, serve
  lora           LoRA's update W + (alpha/r)·B·A, drawn to scale for SmolLM2's q_proj, with real layers' parameter counts
  qlora_memory   QLoRA's memory split for InternLM2-chat-1.8B and InternLM2.5-7B from helpers.estimate.estimate_memory
  chat_template  one question and answer in the qwen_chat (ChatML) template, tokenised, with the labels xtuner trains on
  packed_batch   one packed sequence of max_length tokens made of real encoded samples, with their -100 label spans

Every number a figure shows comes from the course's code: the profiles (r, alpha, max_length), the memory estimator,
helpers.chat.build_prompt, xtuner's own template_map_fn / encode_fn / Packer, and the tiny model's tokenizer
(helpers.models.build_tiny_model, trained in about a second from the shipped datasets, deterministic, offline).

How "up to date" is checked (``--check``, and tests/test_figures.py), robustly:
  1. Data, exactly. Each figure is drawn from a JSON-able dict of everything it shows (token ids, labels, GB, counts).
     That JSON is stored in the PNG itself (a tEXt chunk named "Data"). A regenerated figure must carry the same JSON,
     byte for byte: any change in what the figure says (a profile's r, the estimator, the template, the data, the
     tokenizer) is caught exactly, whatever the machine's fonts or rendering.
  2. Pixels, with a tolerance. The regenerated PNG must have the same size and a root-mean-square pixel difference of
     at most PIXEL_TOLERANCE (on 0-255): this catches changes of layout or style. Rendering is made deterministic:
     the Agg backend, matplotlib's own default style (no matplotlibrc), fixed figure sizes and dpi, no tight bbox, and
     only the fonts bundled with matplotlib (DejaVu Sans / Sans Mono: the same on every machine, which is why the
     labels are in English; a missing glyph is an error, never a fallback to a system font). No timestamp and no
     "Software" version string are written. Pixels can still differ between matplotlib releases (text rasterisation),
     so the pixel comparison is made only when the PNG was drawn by the same matplotlib version (stored as
     "Renderer"); otherwise only the data comparison applies and --check says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle  # noqa: E402

from helpers import chat, data, estimate, models, profiles  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"
PIXEL_TOLERANCE = 1.0  # RMS difference on 0-255 allowed between a committed PNG and a fresh one
DPI = 150
RC = {"font.family": "DejaVu Sans", "font.monospace": ["DejaVu Sans Mono"], "font.size": 10,
      "figure.dpi": DPI, "savefig.dpi": DPI, "svg.hashsalt": "xtuner-course", "figure.facecolor": "white",
      "savefig.facecolor": "white", "axes.spines.top": False, "axes.spines.right": False}
COLORS = {"frozen": "#c9d3de", "trained": "#8fd19e", "special": "#d62828", "prompt": "#dde3ea",
          "edge": "#3d4a5c", "coming": "#9aa5b1", "text": "#1d2733"}
TEMPLATE = "qwen_chat"  # the tiny and cpu profiles' template (ChatML); InternLM2's internlm2_chat is the same text
QUESTION = "Who are you?"  # datasets/eval_questions.json; also a training question of 01
ANSWER = "My name is {name}. I was created by {author}."  # datasets/self_cognition.json, an English answer
NAME, AUTHOR = "XiaoZhi", "an XTuner learner"  # 01's 小智 / 书生学员, spelled so the bundled font draws them
# Hugging Face config.json numbers of the course's models (the 7B as notebook 04 describes it).
SMOLLM2_135M = dict(num_hidden_layers=30, hidden_size=576, intermediate_size=1536, vocab_size=49152,
                    num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
INTERNLM2_CHAT_1_8B = dict(num_hidden_layers=24, hidden_size=2048, intermediate_size=8192, vocab_size=92544,
                           num_attention_heads=16, num_key_value_heads=8, tie_word_embeddings=False)
INTERNLM2_5_7B = dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, vocab_size=92544,
                      num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False)


# ----------------------------------------------------------------------------------------------------- the data
def pipeline_data() -> dict:
    """The course's stages in order: notebook, stage, what runs, what it writes (a stage whose ``runs`` is "coming" is
    drawn dashed)."""
    stages = [("00", "environment\n+ base model", "answers before tuning", "models/"),
              ("01-02", "data", "build / clean / check", "data/*.jsonl"),
              ("03", "config", "xtuner copy-cfg", "configs/course_*.py"),
              ("04", "train", "xtuner train", "work_dirs/.../iter_N.pth"),
              ("05", "convert", "xtuner convert pth_to_hf", "hf_adapter/"),
              ("05", "merge", "xtuner convert merge", "merged/"),
              ("06", "chat", "xtuner chat", "before / after answers"),
              ("07", "evaluate", "held-out / C-Eval", "reports/evaluation.md"),
              ("08", "serve", "streamlit / llama.cpp", "gguf/*.gguf")]
    return {"stages": [dict(zip(("notebook", "stage", "runs", "writes"), s)) for s in stages]}


def _lora_layer(name: str, d: int, k: int, profile: profiles.Profile) -> dict:
    """Parameters of one d×k weight and of its LoRA matrices B (d×r) and A (r×k)."""
    r = profile.lora_r
    return {"layer": name, "d": d, "k": k, "r": r, "alpha": profile.lora_alpha, "profile": profile.name,
            "scale": profile.lora_alpha / r, "full": d * k, "lora": r * (d + k)}


def _lora_model(model: str, config: dict, profile: profiles.Profile) -> dict:
    """Trainable LoRA parameters when every attention and MLP projection of every layer gets an adapter."""
    shape = estimate.shape_from_config(config)
    h, i, kv, r = shape.hidden, shape.intermediate, shape.kv_dim, profile.lora_r
    projections = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # q k v o, gate up down (in, out)
    per_layer = sum(r * (n_in + n_out) for n_in, n_out in projections)
    return {"model": model, "profile": profile.name, "r": r, "params": shape.params,
            "lora": shape.layers * per_layer}


def lora_data() -> dict:
    """LoRA parameter counts for one real layer of each profile's model, and for the whole model."""
    cpu, gpu = profiles.PROFILES["cpu"], profiles.PROFILES["gpu"]
    return {"layers": [_lora_layer("SmolLM2-135M q_proj", 576, 576, cpu),
                       _lora_layer("InternLM2-chat-1.8B attention.wo", 2048, 2048, gpu)],
            "models": [_lora_model("SmolLM2-135M", SMOLLM2_135M, cpu),
                       _lora_model("InternLM2-chat-1.8B", INTERNLM2_CHAT_1_8B, gpu)]}


def qlora_memory_data() -> dict:
    """estimate_memory for QLoRA on the gpu profile's settings, at its max_length and at xtuner's default 2048."""
    gpu = profiles.PROFILES["gpu"]
    bars = []
    for model, config in [("InternLM2-chat-1.8B", INTERNLM2_CHAT_1_8B), ("InternLM2.5-7B", INTERNLM2_5_7B)]:
        for max_length in (gpu.max_length, 2048):
            setup = estimate.Setup(method="qlora", lora_r=gpu.lora_r, max_length=max_length,
                                   batch_size=gpu.batch_size, device="cuda")
            gb = estimate.estimate_memory(estimate.shape_from_config(config), setup)
            bars.append({"model": model, "max_length": max_length, "lora_r": gpu.lora_r, "batch_size": gpu.batch_size,
                         "gb": gb})
    cards = {"8 GB: InternStudio A100 10%": 8, "24 GB: RTX 3090 / 4090, A100 30%": 24, "80 GB: A100 / H100": 80}
    return {"bars": bars, "cards": cards}


_BUILD_DIRS: list[tempfile.TemporaryDirectory] = []  # removed when the process exits


@lru_cache(maxsize=None)
def _tiny_tokenizer(model_dir: str | None = None):
    """The tiny profile's tokenizer: ``model_dir`` if given (a tests fixture), else built into a temporary folder."""
    from transformers import AutoTokenizer

    if model_dir is None:
        _BUILD_DIRS.append(tempfile.TemporaryDirectory(prefix="figures-"))
        model_dir = str(models.build_tiny_model(Path(_BUILD_DIRS[-1].name) / models.TINY_DIR))
    return AutoTokenizer.from_pretrained(model_dir)


def _encode(record: dict, tokenizer) -> dict:
    """One ``conversation`` record encoded exactly as xtuner does: template_map_fn, then encode_fn."""
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    example = json.loads(json.dumps(record))  # xtuner's map functions edit records in place
    example.update(template_map_fn_factory(template=PROMPT_TEMPLATE[TEMPLATE])(example))
    return encode_fn(example, tokenizer, max_length=10**9)


def chat_template_data(model_dir: str | None = None) -> dict:
    """The question and answer as xtuner trains on them: tokens, their text, and their labels."""
    tokenizer = _tiny_tokenizer(model_dir)
    answer = ANSWER.format(name=NAME, author=AUTHOR)
    encoded = _encode({"conversation": [{"input": QUESTION, "output": answer}]}, tokenizer)
    prompt = chat.build_prompt(TEMPLATE, QUESTION)
    n_prompt = encoded["labels"].index(next(label for label in encoded["labels"] if label != -100))
    assert tokenizer.decode(encoded["input_ids"][:n_prompt]) == prompt, "the prompt is not build_prompt's text"
    specials = set(tokenizer.all_special_ids)
    return {"template": TEMPLATE, "prompt": prompt, "answer": answer,
            "tokens": [{"id": i, "text": tokenizer.decode([i]), "label": label, "special": i in specials}
                       for i, label in zip(encoded["input_ids"], encoded["labels"])]}


def packed_batch_data(model_dir: str | None = None) -> dict:
    """The first packed sequence xtuner's Packer makes from the first self-cognition samples of 01 (seed 0)."""
    from xtuner.dataset.utils import Packer

    max_length = profiles.PROFILES["cpu"].max_length
    tokenizer = _tiny_tokenizer(model_dir)
    records = data.build_self_cognition("小智", "书生学员", n=12, seed=0)  # 01's defaults
    encoded = [_encode(r, tokenizer) for r in records]
    packed = Packer(chunk_size=max_length)({"input_ids": [e["input_ids"] for e in encoded],
                                            "labels": [e["labels"] for e in encoded]})
    labels = packed["labels"][0]
    samples, start = [], 0
    for index, e in enumerate(encoded):
        if start >= max_length:
            break
        length = len(e["input_ids"])
        assert packed["input_ids"][0][start:start + length] == e["input_ids"][:max_length - start]
        samples.append({"sample": index + 1, "start": start, "length": length,
                        "in_this_sequence": min(length, max_length - start),
                        "question": records[index]["conversation"][0]["input"]})
        start += length
    return {"max_length": max_length, "samples": samples, "labels_mask": [int(label != -100) for label in labels],
            "tokens_with_labels": sum(label != -100 for label in labels),
            "sequences_from_these_samples": len(packed["labels"])}


# ------------------------------------------------------------------------------------------------------ drawing
def _box(ax, x, y, w, h, face, edge=COLORS["edge"], dashed=False):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08", facecolor=face,
                                edgecolor=edge, linewidth=1.2, linestyle="--" if dashed else "-"))


def _arrow(ax, start, end):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=COLORS["edge"], linewidth=1.3))


def draw_pipeline(d: dict):
    stages = d["stages"]
    fig = plt.figure(figsize=(10, 4.2))
    ax = fig.add_axes((0, 0, 1, 1))  # one data unit = one inch
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4.2)
    ax.axis("off")
    w, h, gap = 1.8, 1.25, 0.2
    first_row = 5
    positions = []
    for n in range(len(stages)):
        if n < first_row:
            positions.append((0.1 + n * (w + gap), 2.45))
        else:
            positions.append((0.1 + (first_row - 1 - (n - first_row)) * (w + gap), 0.45))
    for n, (stage, (x, y)) in enumerate(zip(stages, positions)):
        coming = stage["runs"] == "coming"
        face = "white" if coming else COLORS["trained"] if stage["stage"] == "train" else COLORS["frozen"]
        ax.text(x + 0.08, y + h - 0.1, stage["notebook"], ha="left", va="top", fontsize=12, weight="bold",
                color=COLORS["coming"] if coming else COLORS["text"])
        _box(ax, x, y, w, h, face, edge=COLORS["coming"] if coming else COLORS["edge"], dashed=coming)
        ax.text(x + w / 2, y + h * 0.52, stage["stage"], ha="center", va="center", fontsize=10.5, weight="bold",
                color=COLORS["coming"] if coming else COLORS["text"])
        ax.text(x + w / 2, y + 0.2, "(coming)" if coming else stage["runs"], ha="center", va="center", fontsize=7.5,
                family="monospace", color=COLORS["coming"] if coming else COLORS["text"])
        if stage["writes"]:
            ax.text(x + w / 2, y - 0.14, stage["writes"], ha="center", va="top", fontsize=7, family="monospace",
                    color="#55606e")
        if n + 1 < len(stages):
            nx, ny = positions[n + 1]
            if ny == y:
                sx, ex = (x + w, nx) if nx > x else (x, nx + w)
                _arrow(ax, (sx + 0.03, y + h / 2), (ex - 0.03, y + h / 2))
            else:
                _arrow(ax, (x + w / 2, y - 0.4), (nx + w / 2, ny + h + 0.05))
    ax.text(5, 4.05, "The course pipeline: notebook, stage, what it runs, what it writes",
            ha="center", va="top", fontsize=11, weight="bold")
    return fig


def draw_lora(d: dict):
    fig = plt.figure(figsize=(10, 5.2))
    formula = "layer output  h = W x + (α/r) · B (A x)          merged weight  W' = W + (α/r) · B A   (same d × k as W)"
    fig.text(0.5, 0.87, formula, ha="center", va="center", fontsize=11)
    ax = fig.add_axes((0.01, 0.02, 0.55, 0.78))
    ax.set_xlim(-0.3, 9.4)
    ax.set_ylim(-1.3, 3.9)
    ax.set_aspect("equal")
    ax.axis("off")
    layer = d["layers"][0]
    size = 3.2
    unit = size / layer["k"]
    rw = layer["r"] * unit  # drawn to scale: r = 32 of 576
    y0 = 0.2
    ax.add_patch(Rectangle((0, y0), size, size, facecolor=COLORS["frozen"], edgecolor=COLORS["edge"]))
    ax.text(size / 2, y0 + size / 2, "W\nfrozen", ha="center", va="center", fontsize=13, weight="bold")
    ax.text(size / 2, y0 - 0.25, f"d × k = {layer['d']} × {layer['k']}", ha="center", va="top", fontsize=9)
    ax.text(size + 0.35, y0 + size / 2, "+", ha="center", va="center", fontsize=22)
    ax.text(size + 1.05, y0 + size / 2, r"$\frac{\alpha}{r}$ ·", ha="center", va="center", fontsize=18)
    bx = size + 1.75
    ax.add_patch(Rectangle((bx, y0), rw, size, facecolor=COLORS["trained"], edgecolor=COLORS["edge"]))
    ax.text(bx + rw / 2, y0 - 0.25, f"B\n{layer['d']} × {layer['r']}", ha="center", va="top", fontsize=9)
    ax.text(bx + rw + 0.22, y0 + size - 0.08, "·", ha="center", va="center", fontsize=18)
    a_x = bx + rw + 0.45
    ax.add_patch(Rectangle((a_x, y0 + size - rw), size, rw, facecolor=COLORS["trained"], edgecolor=COLORS["edge"]))
    ax.text(a_x + size / 2, y0 + size - rw - 0.15, f"A   {layer['r']} × {layer['k']}", ha="center", va="top", fontsize=9)
    ax.text(a_x + size / 2, y0 + 0.9, "B starts at 0, A at random:\nat step 0, W + (α/r)·B·A = W.\n"
            "Only B and A are trained.", ha="center", va="center", fontsize=8.5, color="#55606e")
    ax.text(4.5, -1.0, f"drawn to scale: {layer['layer']}, r = {layer['r']}", ha="center", va="center",
            fontsize=8.5, color="#55606e")
    tx = fig.add_axes((0.57, 0.02, 0.43, 0.76))
    tx.axis("off")
    lines = ["One weight matrix"]
    for row in d["layers"]:
        lines += ["", f"{row['layer']}",
                  f"  {row['profile']} profile: r = {row['r']}, alpha = {row['alpha']}, alpha/r = {row['scale']:g}",
                  f"  W    {row['d']} x {row['k']:<5} = {row['full']:>10,}",
                  f"  B+A  r x (d + k)  = {row['lora']:>10,}  ({100 * row['lora'] / row['full']:.2f} %)"]
    lines += ["", "", "Whole model (q k v o gate up down, every layer)"]
    for row in d["models"]:
        lines += ["", f"{row['model']}, r = {row['r']}",
                  f"  trainable {row['lora'] / 1e6:6.2f} M of {row['params'] / 1e6:7.1f} M "
                  f"({100 * row['lora'] / row['params']:.1f} %)"]
    tx.text(0.0, 0.97, "\n".join(lines), ha="left", va="top", fontsize=8.6, family="monospace", transform=tx.transAxes)
    fig.suptitle("LoRA: a frozen weight plus a trained low-rank update", fontsize=12, weight="bold", y=0.97)
    return fig


MEMORY_PARTS = [("weights", "weights (nf4 linear layers + fp16 rest)", "#8ea9c8"),
                ("gradients+optimizer", "LoRA gradients + Adam states (fp32)", "#8fd19e"),
                ("activations", "activations (checkpointed)", "#f6c177"),
                ("logits", "logits (fp32, x3)", "#e58e73"),
                ("overhead", "CUDA context + cache", "#b9b4c7")]


def draw_qlora_memory(d: dict):
    fig, (top, ax) = plt.subplots(2, 1, figsize=(10, 5.6), sharex=True,
                                  gridspec_kw={"height_ratios": [1, 6], "hspace": 0.06})  # a broken y axis
    bars = d["bars"]
    x = np.arange(len(bars))
    for axis in (top, ax):
        bottom = np.zeros(len(bars))
        for key, label, color in MEMORY_PARTS:
            values = np.array([b["gb"][key] for b in bars])
            axis.bar(x, values, 0.55, bottom=bottom, color=color, edgecolor="white", label=label)
            if axis is ax:
                for xi, v, b0 in zip(x, values, bottom):
                    if v >= 0.6:
                        ax.text(xi, b0 + v / 2, f"{v:.2f}", ha="center", va="center", fontsize=8)
            bottom += values
        for name, gb in d["cards"].items():
            axis.axhline(gb, color="#444444", linestyle="--", linewidth=1)
            axis.text(len(bars) + 0.6, gb + 0.15, name, ha="right", va="bottom", fontsize=8.5)
    for xi, b in zip(x, bars):
        ax.text(xi, b["gb"]["total"] + 0.25, f"{b['gb']['total']:.2f} GB", ha="center", va="bottom", fontsize=9,
                weight="bold")
    ax.set_xlim(-0.5, len(bars) + 0.65)
    ax.set_ylim(0, 26)
    top.set_ylim(77, 83)
    top.set_yticks([80])
    top.spines["bottom"].set_visible(False)
    top.tick_params(bottom=False)
    for axis, ys in ((top, (0, 0)), (ax, (1, 1))):  # the break marks
        axis.plot([0, 1], ys, transform=axis.transAxes, marker=[(-1, -0.5), (1, 0.5)], markersize=10, linestyle="none",
                  color="k", clip_on=False)
    ax.set_xticks(x, [f"{b['model']}\nmax_length {b['max_length']}" for b in bars], fontsize=9)
    ax.set_ylabel("estimated peak GPU memory (GB)")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.86), fontsize=8.5, frameon=False)
    b0 = bars[0]
    top.set_title(f"QLoRA memory split (helpers.estimate.estimate_memory: r = {b0['lora_r']}, batch {b0['batch_size']}, "
                  "activation checkpointing on)", fontsize=11, weight="bold")
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.12)
    return fig


def _token_text(text: str) -> str:
    return text.replace("\n", "\\n").replace(" ", "␣")


def draw_chat_template(d: dict):
    tokens = d["tokens"]
    char_w, pad, gap, box_h, row_h, width, left = 0.0709, 0.12, 0.05, 0.3, 0.62, 9.8, 0.1  # inches
    placed, x, row = [], left, 0
    for t in tokens:
        w = max(len(_token_text(t["text"])) * char_w + pad, 0.3)
        if x + w > width:
            x, row = left, row + 1
        placed.append((x, row, w))
        x += w + gap
        if t["text"].endswith("\n") and t["label"] == -100 and not t["special"]:
            x, row = left, row + 1  # a new row where the text has a new line, as it reads
    rows = row + 1
    height = 1.45 + rows * row_h + 0.45
    fig = plt.figure(figsize=(10, height))
    ax = fig.add_axes((0, 0, 1, 1))  # one data unit = one inch
    ax.set_xlim(0, 10)
    ax.set_ylim(0, height)
    ax.axis("off")
    ax.text(left, height - 0.12, f"The ChatML prompt ({d['template']}) tokenised by the tiny profile's tokenizer; "
            "the number under each token is its label", fontsize=10.5, weight="bold", va="top")
    output = d["answer"] + "<|im_end|>"
    ax.text(left, height - 0.5, f"prompt = build_prompt({d['template']!r}, {QUESTION!r}) = {d['prompt']!r}",
            fontsize=8.2, family="monospace", va="top")
    ax.text(left, height - 0.75, f"output = answer + SUFFIX = {output!r}    then SEP = '\\n'", fontsize=8.2,
            family="monospace", va="top")
    top = height - 1.2
    for t, (x, row, w) in zip(tokens, placed):
        y = top - row * row_h
        trained = t["label"] != -100
        ax.add_patch(FancyBboxPatch((x, y - box_h), w, box_h, boxstyle="round,pad=0,rounding_size=0.04",
                                    facecolor=COLORS["trained"] if trained else COLORS["prompt"],
                                    edgecolor=COLORS["special"] if t["special"] else COLORS["edge"],
                                    linewidth=2.2 if t["special"] else 0.8))
        ax.text(x + w / 2, y - box_h / 2, _token_text(t["text"]), ha="center", va="center", fontsize=8.5,
                family="monospace", weight="bold" if t["special"] else "normal",
                color=COLORS["special"] if t["special"] else COLORS["text"])
        ax.text(x + w / 2, y - box_h - 0.04, str(t["label"]), ha="center", va="top", fontsize=6.5,
                family="monospace", color="#2b7a3d" if trained else "#7a8594")
    n_prompt = sum(t["label"] == -100 for t in tokens)
    legend = [Patch(facecolor=COLORS["prompt"], edgecolor=COLORS["edge"], label=f"label -100: no loss ({n_prompt} tokens)"),
              Patch(facecolor=COLORS["trained"], edgecolor=COLORS["edge"],
                    label=f"label = token id: the loss is on these ({len(tokens) - n_prompt} tokens)"),
              Patch(facecolor="white", edgecolor=COLORS["special"], linewidth=2.2, label="special token (one id each)")]
    ax.legend(handles=legend, loc="lower left", bbox_to_anchor=(left / 10, 0.02 / height), ncol=3, fontsize=8.5,
              frameon=False, borderaxespad=0)
    return fig


def draw_packed_batch(d: dict):
    max_length, per_row = d["max_length"], 64
    rows = -(-max_length // per_row)
    fig, ax = plt.subplots(figsize=(10, 1.0 + rows * 0.62 + 0.9))
    ax.set_xlim(-0.5, per_row + 0.5)
    ax.set_ylim(-rows * 1.5 - 1.2, 1.6)
    ax.axis("off")
    colors = plt.get_cmap("tab10").colors
    owner = np.zeros(max_length, dtype=int)
    for s in d["samples"]:
        owner[s["start"]:s["start"] + s["in_this_sequence"]] = s["sample"]
    for position in range(max_length):
        row, col = divmod(position, per_row)
        y = -row * 1.5
        color = colors[(owner[position] - 1) % len(colors)]
        labelled = d["labels_mask"][position]
        ax.add_patch(Rectangle((col, y - 1), 1, 1, facecolor=color, alpha=1.0 if labelled else 0.3,
                               edgecolor="white", linewidth=0.4, hatch=None if labelled else "////"))
    for s in d["samples"]:
        row, col = divmod(s["start"], per_row)
        y = -row * 1.5
        ax.plot([col, col], [y - 1.12, y + 0.12], color="black", linewidth=2)
        ax.text(col + 0.2, y + 0.18, f"#{s['sample']}: {s['length']}", fontsize=7.5, va="bottom", ha="left")
    for row in range(rows):
        ax.text(-0.4, -row * 1.5 - 0.5, f"{row * per_row}", ha="right", va="center", fontsize=7, color="#55606e")
    last = d["samples"][-1]
    cut = last["length"] - last["in_this_sequence"]
    note = (f"sample #{last['sample']} is cut: its last {cut} tokens start the next packed sequence" if cut else
            "the last sample ends exactly at max_length")
    legend = [Patch(facecolor="#888888", label="has a label: the loss is on it (answer + <|im_end|>)"),
              Patch(facecolor="#888888", alpha=0.3, hatch="////", label="label -100 (prompt, and the '\\n' after <|im_end|>)")]
    ax.legend(handles=legend, loc="lower left", bbox_to_anchor=(0, 0.0), ncol=2, fontsize=8.5, frameon=False)
    ax.set_title(f"One packed sequence of max_length = {max_length} tokens: {len(d['samples'])} encoded samples "
                 f"(#n: its length), {d['tokens_with_labels']} tokens with labels\n{note}",
                 fontsize=10, weight="bold", loc="left")
    fig.subplots_adjust(left=0.04, right=0.99, top=0.86, bottom=0.02)
    return fig


FIGURES = {"pipeline": (pipeline_data, draw_pipeline), "lora": (lora_data, draw_lora),
           "qlora_memory": (qlora_memory_data, draw_qlora_memory),
           "chat_template": (chat_template_data, draw_chat_template),
           "packed_batch": (packed_batch_data, draw_packed_batch)}  # name -> (what it shows, how it is drawn)
NEEDS_TOKENIZER = {"chat_template", "packed_batch"}


# ------------------------------------------------------------------------------------------- writing, checking
def figure_data(name: str, model_dir: str | None = None) -> dict:
    """The JSON-able data that figure ``name`` shows."""
    make = FIGURES[name][0]
    return make(model_dir) if name in NEEDS_TOKENIZER else make()


def _canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def render(name: str, out_dir: Path, model_dir: str | None = None) -> Path:
    """Draw figure ``name`` into ``out_dir/name.png`` with its data and renderer in the PNG's text chunks."""
    d = figure_data(name, model_dir)
    out = Path(out_dir) / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    with plt.style.context("default"), matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*[Gg]lyph.*missing")  # never a silent box for a missing glyph
        fig = FIGURES[name][1](json.loads(_canonical(d)))
        fig.savefig(out, dpi=DPI, metadata={"Software": None, "Title": name, "Source": "scripts/draw_figures.py",
                                            "Renderer": f"matplotlib {matplotlib.__version__}", "Data": _canonical(d)})
        plt.close(fig)
    return out


def read_text_chunks(path: Path) -> dict:
    """The PNG's text chunks (Title, Source, Renderer, Data)."""
    from PIL import Image

    with Image.open(path) as image:
        return dict(image.text)


def pixel_rms(a: Path, b: Path) -> float:
    """Root-mean-square difference of two same-sized PNGs' RGB values (0-255); inf when the sizes differ."""
    from PIL import Image

    with Image.open(a) as ia, Image.open(b) as ib:
        x, y = np.asarray(ia.convert("RGB"), dtype=float), np.asarray(ib.convert("RGB"), dtype=float)
    return float(np.sqrt(np.mean((x - y) ** 2))) if x.shape == y.shape else float("inf")


def stale_reasons(committed: Path, fresh: Path, tolerance: float = PIXEL_TOLERANCE) -> list[str]:
    """Why ``committed`` differs from the freshly drawn ``fresh`` (empty: up to date)."""
    if not committed.is_file():
        return [f"{committed} does not exist"]
    old, new = read_text_chunks(committed), read_text_chunks(fresh)
    if old.get("Data") != new["Data"]:
        before, after = json.loads(old.get("Data", "{}")), json.loads(new["Data"])
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return [f"{committed.name}: the data it shows changed ({', '.join(changed)})"]
    if old.get("Renderer") != new["Renderer"]:
        return []  # pixels are compared only between PNGs drawn by the same matplotlib (see the docstring)
    rms = pixel_rms(committed, fresh)
    if rms > tolerance:
        return [f"{committed.name}: the picture changed (RMS pixel difference {rms:.2f} > {tolerance})"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"figures to draw (default: all of {', '.join(FIGURES)})")
    parser.add_argument("--out", type=Path, default=IMAGES, help="folder to write into (default: images/)")
    parser.add_argument("--check", action="store_true", help="draw into a temporary folder and compare with --out")
    args = parser.parse_args(argv)
    names = args.names or list(FIGURES)
    unknown = sorted(set(names) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}")
    if not args.check:
        for name in names:
            print(render(name, args.out))
        return 0
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            fresh = render(name, Path(tmp))
            committed = args.out / fresh.name
            problems += stale_reasons(committed, fresh)
            drawn_by = read_text_chunks(committed).get("Renderer") if committed.is_file() else None
            if drawn_by and drawn_by != read_text_chunks(fresh)["Renderer"]:
                print(f"{committed.name}: drawn by {drawn_by}, not matplotlib {matplotlib.__version__}: "
                      "only its data was compared")
    for problem in problems:
        print(problem)
    print("up to date" if not problems else "stale: run .venv/bin/python scripts/draw_figures.py")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
