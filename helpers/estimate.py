"""Memory and time estimates before training: will it fit on this card, and how long will an epoch take?"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

GB = 1e9
# The cards learners have (GB of GPU memory).
CARDS = {
    "InternStudio A100 10% (8 GB)": 8, "InternStudio A100 30% (24 GB)": 24, "InternStudio A100 50% (40 GB)": 40,
    "RTX 3090 / 4090 (24 GB)": 24, "A100 / H100 (80 GB)": 80,
}
# Fixed costs measured on the course's machines: imports + allocator on CPU; CUDA context + cache on GPU.
OVERHEAD_GB = {"cpu": 1.4, "cuda": 1.0}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer that decide its memory."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied_embeddings: bool
    qkv_bias: bool = False  # Qwen2 has biases on q, k and v

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    @property
    def linear_params(self) -> int:
        """Parameters in the attention and MLP projections (what QLoRA quantises and LoRA adapts)."""
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_dim
        return self.layers * (attn + 3 * self.hidden * self.intermediate)

    @property
    def params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        biases = self.layers * (self.hidden + 2 * self.kv_dim) if self.qkv_bias else 0
        return self.linear_params + embeddings + biases + (2 * self.layers + 1) * self.hidden


@dataclass(frozen=True)
class Setup:
    """How the model is trained."""

    method: str = "qlora"  # "full", "lora" or "qlora"
    lora_r: int = 64
    max_length: int = 2048
    batch_size: int = 1
    gradient_checkpointing: bool = True  # xtuner's SupervisedFinetune turns it on
    deepspeed: str | None = None  # None, "deepspeed_zero2", "deepspeed_zero3", "deepspeed_zero3_offload"
    device: str = "cuda"  # "cuda" or "cpu"
    num_gpus: int = 1


def shape_from_config(config: dict | str | Path) -> ModelShape:
    """A ``ModelShape`` from a HF ``config.json`` (Llama, Qwen2, InternLM2 key names) (04_train)."""
    if not isinstance(config, dict):
        path = Path(config)
        config = json.loads((path / "config.json" if path.is_dir() else path).read_text())
    heads = config["num_attention_heads"]
    return ModelShape(layers=config["num_hidden_layers"], hidden=config["hidden_size"],
                      intermediate=config["intermediate_size"], vocab=config["vocab_size"], heads=heads,
                      kv_heads=config.get("num_key_value_heads") or heads,
                      tied_embeddings=bool(config.get("tie_word_embeddings", False)),
                      qkv_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")))


def _lora_params(shape: ModelShape, r: int) -> int:
    """Trainable LoRA parameters when every attention and MLP projection gets an adapter (xtuner's default)."""
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_dim
    per_layer = r * ((h + h) * 2 + (h + kv) * 2 + (h + i) * 3)
    return shape.layers * per_layer


def estimate_memory(shape: ModelShape, setup: Setup) -> dict:
    """Peak memory in GB (GPU memory, or RAM on CPU) split into its parts (04_train)."""
    act_bytes = 4 if setup.device == "cpu" else 2
    other = shape.params - shape.linear_params
    if setup.method == "qlora":
        weights = shape.linear_params * 0.53 + other * act_bytes  # nf4 + double-quantised scales; rest unquantised
    else:
        weights = shape.params * act_bytes
    trainable = shape.params if setup.method == "full" else _lora_params(shape, setup.lora_r)
    # fp32 gradients + Adam m and v (+ an fp32 master copy for full fine-tuning in fp16)
    optimizer = trainable * (4 + 8 + (4 if setup.method == "full" and act_bytes == 2 else 0))
    if setup.deepspeed and setup.num_gpus > 1:
        optimizer /= setup.num_gpus
        if "zero3" in setup.deepspeed:
            weights /= setup.num_gpus
    if setup.deepspeed and "offload" in setup.deepspeed:
        optimizer = 0.0  # moved to CPU RAM
    tokens = setup.batch_size * setup.max_length
    per_layer = tokens * (10 * shape.hidden + 4 * shape.intermediate) * act_bytes
    attention = setup.batch_size * shape.heads * setup.max_length ** 2 * act_bytes * (2 if setup.device == "cpu" else 0)
    kept = shape.layers * tokens * shape.hidden * act_bytes if setup.gradient_checkpointing else 0
    activations = kept + (per_layer + attention) * (1 if setup.gradient_checkpointing else shape.layers)
    logits = tokens * shape.vocab * 4 * 3  # fp32 logits, softmax and its gradient
    parts = {"weights": weights, "gradients+optimizer": optimizer, "activations": activations, "logits": logits}
    parts = {k: round(v / GB, 3) for k, v in parts.items()}
    parts["overhead"] = OVERHEAD_GB[setup.device]
    parts["total"] = round(sum(parts.values()), 2)
    return parts


def fit_table(total_gb: float, cards: dict = CARDS) -> list[dict]:
    """For each common card: does an estimate of ``total_gb`` fit, with how much room (04_train)."""
    return [{"card": name, "memory_gb": size, "fits": total_gb <= 0.95 * size, "room_gb": round(size - total_gb, 1)}
            for name, size in cards.items()]


def advice(shape: ModelShape, setup: Setup, card_gb: float) -> list[str]:
    """Changes that would make the run fit ``card_gb``, cheapest first (04_train)."""
    if estimate_memory(shape, setup)["total"] <= 0.95 * card_gb:
        return []
    changes = [("use QLoRA (method='qlora')", {"method": "qlora"}),
               ("batch_size=1 with more accumulative_counts", {"batch_size": 1}),
               (f"max_length={setup.max_length // 2}", {"max_length": setup.max_length // 2}),
               ("--deepspeed deepspeed_zero3_offload", {"deepspeed": "deepspeed_zero3_offload"})]
    found, current = [], setup
    for text, change in changes:
        candidate = replace(current, **change)
        if candidate == current:
            continue
        current = candidate
        found.append(text)
        if estimate_memory(shape, current)["total"] <= 0.95 * card_gb:
            return found
    return found + ["a bigger card: even with all of the above it does not fit"]


def time_per_epoch(total_tokens: int, setup: Setup, accumulative_counts: int, seconds_per_iter: float,
                   packed: bool = True, samples: int | None = None) -> dict:
    """Iterations and minutes per epoch from a measured (or stated) seconds per iteration (04_train)."""
    per_iter = setup.batch_size * setup.num_gpus
    iters = -(-total_tokens // (setup.max_length * per_iter)) if packed else -(-(samples or 0) // per_iter)
    return {"iterations": iters, "optimizer_steps": -(-iters // accumulative_counts),
            "minutes": round(iters * seconds_per_iter / 60, 1)}
