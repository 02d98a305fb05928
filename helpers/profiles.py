"""The three course profiles: one set of notebooks, three sizes of machine."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

ENV_VAR = "COURSE_PROFILE"
INTERNLM2_CHAT_1_8B = "Shanghai_AI_Laboratory/internlm2-chat-1_8b"


@dataclass(frozen=True)
class Profile:
    """Every setting that differs between profiles; notebooks read them, parameters may override them."""

    name: str
    model: str  # "smollm2" (embedded), "tiny" (built locally) or a ModelScope id / local folder
    base_config: str  # the built-in XTuner config that notebook 03 copies
    prompt_template: str  # a key of xtuner.utils.PROMPT_TEMPLATE
    method: str  # "qlora" (4-bit base + LoRA) or "lora"; cpu uses lora: nf4 generation on CPU is ~8x slower
    device: str  # "cpu" or "cuda"
    max_length: int
    batch_size: int
    accumulative_counts: int
    lr: float
    lora_r: int
    lora_alpha: int
    max_iters: int | None  # iteration budget (cpu, tiny); None means train by epochs
    max_epochs: int | None
    warmup_iters: int  # used with max_iters; epochs use the config's warmup_ratio
    save_steps: int
    evaluation_freq: int
    log_interval: int
    max_new_tokens: int
    trust_remote_code: bool
    deepspeed: str | None = None
    # XTuner's SupervisedFinetune recomputes activations in backward to save memory; on a CPU at the course's
    # sizes memory is plentiful and the recomputation only costs time (about a third of each step).
    activation_checkpointing: bool = True
    # Processes `datasets.map` uses while xtuner prepares the data (XTuner's default 32 suits a GPU server;
    # on a 2-core laptop starting them costs more than mapping a few hundred samples).
    map_num_proc: int = 32
    # LoRA dropout (XTuner's configs: 0.1). On a CPU drawing the random masks costs about a sixth of each step.
    lora_dropout: float = 0.1
    # Train the forward pass in bfloat16 (torch.autocast) where the CPU has native bfloat16 (helpers.cpu_amp);
    # float32 elsewhere. GPU profiles keep XTuner's AmpOptimWrapper.
    cpu_bf16_autocast: bool = False
    # Continued pre-training (09): XTuner's built-in full-parameter config, trained as LoRA for this many iterations.
    pretrain_config: str = "internlm2_1_8b_full_custom_pretrain_e1"
    pretrain_iters: int = 100
    # Preference tuning (10): XTuner's built-in full-parameter DPO and ORPO configs, trained as LoRA (QLoRA on a GPU).
    dpo_config: str = "internlm2_chat_1_8b_dpo_full"
    orpo_config: str = "internlm2_chat_1_8b_orpo_full"
    preference_iters: int = 60
    preference_lr: float = 5e-5  # LoRA; the built-in full-parameter configs use 5e-7 (DPO) and 5e-6 (ORPO)

    def with_overrides(self, **changes) -> "Profile":
        """A copy with some fields changed; unknown names are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"Unknown profile setting(s) {unknown}; known settings: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


PROFILES = {
    "tiny": Profile(
        name="tiny", model="tiny", base_config="internlm2_chat_1_8b_qlora_alpaca_e3",
        prompt_template="qwen_chat", method="qlora", device="cpu",
        max_length=256, batch_size=1, accumulative_counts=1, lr=2e-3, lora_r=32, lora_alpha=64,
        max_iters=150, max_epochs=None, warmup_iters=5, save_steps=50, evaluation_freq=50, log_interval=1,
        max_new_tokens=32, trust_remote_code=False, activation_checkpointing=False, map_num_proc=1,
        pretrain_iters=20, preference_iters=20, preference_lr=2e-4,
    ),
    "cpu": Profile(
        name="cpu", model="smollm2", base_config="internlm2_chat_1_8b_qlora_alpaca_e3",
        prompt_template="qwen_chat", method="lora", device="cpu",
        max_length=256, batch_size=1, accumulative_counts=1, lr=4e-4, lora_r=32, lora_alpha=64,
        max_iters=60, max_epochs=None, warmup_iters=5, save_steps=30, evaluation_freq=30, log_interval=1,
        max_new_tokens=48, trust_remote_code=False, activation_checkpointing=False, map_num_proc=1,
        lora_dropout=0.0, cpu_bf16_autocast=True, pretrain_iters=20, preference_iters=20, preference_lr=2e-4,
    ),
    "gpu": Profile(
        name="gpu", model=INTERNLM2_CHAT_1_8B, base_config="internlm2_chat_1_8b_qlora_alpaca_e3",
        prompt_template="internlm2_chat", method="qlora", device="cuda",
        max_length=1024, batch_size=1, accumulative_counts=16, lr=2e-4, lora_r=64, lora_alpha=16,
        max_iters=None, max_epochs=3, warmup_iters=0, save_steps=100, evaluation_freq=100, log_interval=10,
        max_new_tokens=128, trust_remote_code=True,
    ),
}


def _default_profile_name() -> str:
    """``$COURSE_PROFILE`` if set, else ``gpu`` when torch sees CUDA, else ``cpu``."""
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The profile called ``name`` (default: ``_default_profile_name()``), with overrides (00_environment_and_base_model)."""
    name = name or _default_profile_name()
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; choose one of {sorted(PROFILES)} (or set ${ENV_VAR}).")
    return PROFILES[name].with_overrides(**overrides)
