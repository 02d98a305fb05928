"""XTuner configs: list, copy, edit from notebook parameters, diff, and load with mmengine."""

from __future__ import annotations

import difflib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import cli, files, formats, validation
from .profiles import Profile

CHECK_DIR = "own_data"  # sub-folder of configs/ for the config that `xtuner check-custom-dataset` reads


class ConfigEditError(ValueError):
    """An edit's target text was not found (or found too often): nothing is skipped silently."""


@dataclass(frozen=True)
class Edit:
    """Replace ``pattern`` (a regex, ``^``/``$`` match at lines; ``(?s)`` to span lines) by ``replacement``, exactly ``count`` times."""

    what: str
    pattern: str
    replacement: str
    count: int = 1


def list_configs(pattern: str) -> list[str]:
    """Names of built-in configs matching ``pattern``, from ``xtuner list-cfg -p`` (03_xtuner_config)."""
    run = cli.run_xtuner("list-cfg", "-p", pattern)
    names = [line.strip() for line in run.output.splitlines() if re.fullmatch(r"\s*[\w.\-]+\s*", line)]
    cli.require(bool(names), run, f"any config matching {pattern!r}", "Check the pattern (e.g. 'internlm2').")
    return names


def copy_config(name: str, dest_dir: Path, overwrite: bool = False) -> Path:
    """``xtuner copy-cfg NAME DIR``: the built-in config as ``DIR/NAME_copy.py``; never clobbers (03_xtuner_config)."""
    dest = files.check_writable(Path(dest_dir) / f"{name}_copy.py", overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        print(f"# 先复制到临时文件夹 {Path(tmp).name}/，再移到 {dest}（不会覆盖已有的文件，除非 overwrite=True）")
        run = cli.run_xtuner("copy-cfg", name, tmp)
        made = Path(tmp) / dest.name
        cli.require(made.is_file(), run, str(made), "Is the config name right? `xtuner list-cfg` lists them.")
        shutil.move(made, dest)
    return dest


def _setting(name: str, value: str) -> Edit:
    """Set a top-level ``name = ...`` line of PART 1 to the Python expression ``value``."""
    return Edit(f"set {name}", rf"^{re.escape(name)} = .*$", f"{name} = {value}")


def _literal(text: str, new: str, what: str | None = None) -> Edit:
    """Replace the exact ``text`` once."""
    return Edit(what or f"replace {text.strip()!r}", re.escape(text), new.replace("\\", "\\\\"))


def _apply_edits(text: str, edits: list[Edit], source: str = "config") -> str:
    """Apply every edit; an edit whose target is absent raises ``ConfigEditError``."""
    for edit in edits:
        text, found = re.subn(edit.pattern, edit.replacement, text, flags=re.MULTILINE)
        if found != edit.count:
            raise ConfigEditError(
                f"{source}: cannot {edit.what}: expected {edit.count} match(es) of {edit.pattern!r}, found {found}. "
                "Start again from a fresh `xtuner copy-cfg` of the built-in config, or adjust the edit."
            )
    return text


def course_edits(profile: Profile, model_path: Path, data_path: Path, data_format: str,
                 evaluation_inputs: list[str], system: str = "") -> list[Edit]:
    """Every change from the built-in InternLM2 QLoRA config to the course's config (03_xtuner_config)."""
    map_fn = formats.FORMATS[data_format].map_fn
    edits = [
        _setting("pretrained_model_name_or_path", repr(str(model_path))),
        Edit("rename alpaca_en_path to data_path", r"^alpaca_en_path = .*$", f"data_path = {str(data_path)!r}"),
        _literal("dataset=dict(type=load_dataset, path=alpaca_en_path)",
                'dataset=dict(type=load_dataset, path="json", data_files=dict(train=data_path))'),
        _literal("dataset_map_fn=alpaca_map_fn", f"dataset_map_fn={map_fn}"),
        _literal("import alpaca_map_fn, template_map_fn_factory",
                f"import {map_fn + ', ' if map_fn else ''}template_map_fn_factory"),
        Edit("rename alpaca_en to train_dataset", r"^alpaca_en = dict\(", "train_dataset = dict("),
        _literal("dataset=alpaca_en,", "dataset=train_dataset,"),
        _setting("prompt_template", f"PROMPT_TEMPLATE.{profile.prompt_template}"),
        _setting("max_length", str(profile.max_length)),
        _setting("batch_size", f"{profile.batch_size}  # per_device"),
        _setting("accumulative_counts", str(profile.accumulative_counts)),
        _setting("lr", repr(profile.lr)),
        _setting("save_steps", str(profile.save_steps)),
        _setting("evaluation_freq", str(profile.evaluation_freq)),
        _setting("SYSTEM", repr(system)),
        _setting("evaluation_inputs", repr(list(evaluation_inputs))),
        _literal("        r=64,\n        lora_alpha=16,", f"        r={profile.lora_r},\n        lora_alpha={profile.lora_alpha},"),
        _literal("        prompt_template=prompt_template,\n    ),\n]",
                f"        prompt_template=prompt_template,\n        max_new_tokens={profile.max_new_tokens},\n    ),\n]",
                "limit the evaluation hook's answers to max_new_tokens"),
    ]
    if profile.lora_dropout != 0.1:
        edits.append(_literal("        lora_dropout=0.1,", f"        lora_dropout={profile.lora_dropout},"))
    edits += _runtime_edits(profile)
    if profile.method == "lora":
        edits.append(Edit("drop quantization_config (plain LoRA)", r"(?s)\n        quantization_config=dict\(.*?\n        \),", ""))
    edits += _iteration_edits(profile) if profile.max_iters else [_setting("max_epochs", str(profile.max_epochs))]
    edits += _speed_edits(profile, "sampler")
    if profile.device == "cpu":
        edits += [_literal("torch_dtype=torch.float16,", "torch_dtype=torch.float32,"), *_cpu_edits(profile)]
    return edits


LORA_BLOCK = """    lora=dict(
        type=LoraConfig,
        r={r},
        lora_alpha={alpha},
        lora_dropout={dropout},
        bias="none",
        task_type="CAUSAL_LM",
    ),
)
"""


def pretrain_edits(profile: Profile, model_path: Path, data_path: Path, evaluation_inputs: list[str],
                   max_iters: int) -> list[Edit]:
    """Every change from the built-in full-parameter pre-training config to the course's LoRA one (09_pretrain)."""
    iters = _short_run(profile, max_iters)
    edits = [
        _setting("pretrained_model_name_or_path", repr(str(model_path))),
        _setting("data_files", repr([str(data_path)])),
        _literal("from xtuner.dataset.map_fns import pretrain_map_fn\n", "",
                 "drop pretrain_map_fn (the data is already in the pre-training format)"),
        _literal("dataset_map_fn=pretrain_map_fn,", "dataset_map_fn=None,"),
        _setting("max_length", str(profile.max_length)),
        _setting("batch_size", f"{profile.batch_size}  # per_device"),
        _setting("accumulative_counts", "1"),
        _setting("lr", f"{profile.lr!r}  # LoRA learns with a larger rate than full fine-tuning (2e-5)"),
        _setting("save_steps", str(max_iters)),
        _setting("evaluation_freq", str(max_iters)),
        _setting("evaluation_inputs", repr(list(evaluation_inputs))),
        _literal("from torch.optim import AdamW\n", "from peft import LoraConfig\nfrom torch.optim import AdamW\n"),
        _literal("        trust_remote_code=True,\n    ),\n)\n",
                 "        trust_remote_code=True,\n    ),\n" + LORA_BLOCK.format(r=profile.lora_r, alpha=profile.lora_alpha, dropout=profile.lora_dropout),
                 "train a LoRA adapter instead of every weight"),
        _literal("        system=SYSTEM,\n    ),\n]", f"        system=SYSTEM,\n        max_new_tokens={profile.max_new_tokens},\n    ),\n]",
                 "limit the evaluation hook's answers to max_new_tokens"),
        *_iteration_edits(iters),
    ]
    edits += _runtime_edits(profile)
    edits += _speed_edits(profile, "train_dataloader")
    if profile.device == "cpu":
        edits += _cpu_edits(profile.with_overrides(method="lora"))  # LoRA on every profile: no 4-bit config here
    return edits


QLORA_BLOCK = """        torch_dtype=torch.float16,
        quantization_config=dict(
            type=BitsAndBytesConfig,
            load_in_4bit=True,
            load_in_8bit=False,
            llm_int8_threshold=6.0,
            llm_int8_has_fp16_weight=False,
            bnb_4bit_compute_dtype=torch.float16,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_type="nf4",
        ),
"""


def preference_edits(profile: Profile, method: str, model_path: Path, data_path: Path, evaluation_inputs: list[str],
                     max_iters: int, beta: float = 0.1) -> list[Edit]:
    """Every change from the built-in full-parameter DPO or ORPO config (``method``) to the course's LoRA one: QLoRA
    where the profile trains 4-bit on a GPU, LoRA on a CPU (10_preference)."""
    model_class = {"dpo": "DPO", "orpo": "ORPO"}[method]
    iters = _short_run(profile, max_iters)
    quantize = profile.method == "qlora" and profile.device == "cuda"
    edits = [
        _literal("from datasets import load_dataset\n", "", "drop load_dataset (the pairs are a local JSONL file)"),
        _literal("    orpo_dpo_mix_40k_map_fn,\n", "    load_jsonl_dataset,\n"),
        _literal('dataset=dict(type=load_dataset, path="mlabonne/orpo-dpo-mix-40k"),',
                 f"dataset=dict(type=load_jsonl_dataset, data_files=[{str(data_path)!r}]),"),
        _literal("dataset_map_fn=orpo_dpo_mix_40k_map_fn,", "dataset_map_fn=None,",
                 "dataset_map_fn=None (the pairs are already prompt/chosen/rejected messages)"),
        _setting("pretrained_model_name_or_path", repr(str(model_path))),
        _setting("prompt_template", f"PROMPT_TEMPLATE.{profile.prompt_template}  # the evaluation hook's prompts"),
        _setting("max_length", str(profile.max_length)),
        _setting("loss_beta", repr(beta)),
        _setting("batch_size", f"{profile.batch_size}  # per_device"),
        _setting("accumulative_counts", "1"),
        _setting("lr", f"{profile.preference_lr!r}  # LoRA learns with a larger rate than full fine-tuning"),
        _setting("save_steps", str(max_iters)),
        _setting("evaluation_freq", str(max_iters)),
        _setting("SYSTEM", '""'),
        Edit("set evaluation_inputs", r"(?s)^evaluation_inputs = \[\n.*?\n\]$",
             f"evaluation_inputs = {list(evaluation_inputs)!r}".replace("\\", "\\\\")),
        _literal('    padding_side="right",\n)', f'    padding_side="right",\n    chat_template={formats.CHATML!r},\n)',
                 "give the tokenizer the ChatML chat_template that the preference dataset applies"),
        _literal("from torch.optim import AdamW\n", "from peft import LoraConfig\nfrom torch.optim import AdamW\n"),
        _literal("        trust_remote_code=True,\n    ),\n)\n",
                 "        trust_remote_code=True,\n" + (QLORA_BLOCK if quantize else "") + "    ),\n"
                 + LORA_BLOCK.format(r=profile.lora_r, alpha=profile.lora_alpha, dropout=profile.lora_dropout),
                 "train a LoRA adapter (the reference model is the same model with the adapter switched off)"),
        Edit("limit the evaluation hook's answers to max_new_tokens",
             r"^(        prompt_template=prompt_template,\n)(    \),?\n\])", rf"\1        max_new_tokens={profile.max_new_tokens},\n\2"),
        *_iteration_edits(iters),
    ]
    if quantize:
        edits += [_literal("from mmengine.dataset import DefaultSampler\n", "import torch\nfrom mmengine.dataset import DefaultSampler\n"),
                  _literal("from transformers import AutoModelForCausalLM, AutoTokenizer\n",
                           "from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig\n")]
    edits += _runtime_edits(profile)
    edits += _speed_edits(profile, None, model_class)
    if profile.device == "cpu":
        edits += _cpu_edits(profile.with_overrides(method="lora"))
    return edits


def _runtime_edits(profile: Profile) -> list[Edit]:
    """What every course config changes at run time: the log interval, a fixed seed, and ``trust_remote_code``
    where the profile's model needs none (run after any edit that matches ``trust_remote_code=True`` itself)."""
    edits = [
        _literal("log_metric_by_epoch=False, interval=10", f"log_metric_by_epoch=False, interval={profile.log_interval}"),
        _literal("randomness = dict(seed=None,", "randomness = dict(seed=0,"),
    ]
    if profile.trust_remote_code is False:
        edits.append(Edit("trust_remote_code=False", r"trust_remote_code=True", "trust_remote_code=False", count=2))
    return edits


def _speed_edits(profile: Profile, after_dataset: str | None, model_class: str = "SupervisedFinetune") -> list[Edit]:
    """No activation recomputation and fewer data processes where the profile says so; ``after_dataset`` is the
    word that follows the training dataset's ``dict(...)`` in this config (None: the dataset's own ``num_proc``)."""
    edits = []
    if not profile.activation_checkpointing:
        edits.append(_literal(f"    type={model_class},\n",
                              f"    type={model_class},\n    use_activation_checkpointing=False,\n",
                              "turn activation checkpointing off (no recomputation in backward)"))
    if profile.map_num_proc != 32 and after_dataset is None:
        edits.append(_literal("num_proc=32,", f"num_proc={profile.map_num_proc},",
                              f"prepare the data with {profile.map_num_proc} process(es)"))
    elif profile.map_num_proc != 32:
        end = f"    use_varlen_attn=use_varlen_attn,\n)\n\n{after_dataset}"
        edits.append(_literal(end, end.replace(")\n\n", f"    map_num_proc={profile.map_num_proc},\n)\n\n", 1),
                              f"prepare the data with {profile.map_num_proc} process(es)"))
    return edits


def _short_run(profile: Profile, max_iters: int) -> Profile:
    """The profile trained for ``max_iters`` iterations with a warm-up of at least one (mmengine refuses a LinearLR
    whose end equals its begin) and at most a quarter of the run."""
    return profile.with_overrides(max_iters=max_iters, warmup_iters=max(1, min(profile.warmup_iters, max_iters // 4)))


def _iteration_edits(profile: Profile) -> list[Edit]:
    """Train for a fixed number of iterations instead of epochs (cpu, tiny)."""
    return [
        Edit("max_epochs -> max_iters", r"^max_epochs = .*$", f"max_iters = {profile.max_iters}"),
        Edit("warmup_ratio -> warmup_iters", r"^warmup_ratio = .*$", f"warmup_iters = {profile.warmup_iters}"),
        Edit("iteration-based param_scheduler", r"(?s)^param_scheduler = \[\n.*?\n\]$", ITER_SCHEDULER),
        _literal("train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)",
                "train_cfg = dict(type=TrainLoop, max_iters=max_iters)"),
    ]


ITER_SCHEDULER = """param_scheduler = [
    dict(type=LinearLR, start_factor=1e-5, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]"""

CPU_PATCHES = '''

#######################################################################
#            Course: CPU adaptations (cpu and tiny profiles)          #
#######################################################################
# xtuner 0.2.0 calls torch.cpu.is_bf16_supported(), which torch does not define.
setattr(__import__("torch").cpu, "is_bf16_supported", lambda: False)
# Tiny early LoRA updates create float32 denormals, which make CPU steps about 80x slower.
__import__("torch").set_flush_denormal(True)
# transformers 4.48 refuses bitsandbytes on CPU; bitsandbytes 0.48 does nf4 on CPU.
setattr(__import__("transformers.integrations.bitsandbytes", fromlist=["_"]),
        "_validate_bnb_multi_backend_availability", lambda raise_exception=False: True)
'''


HOOK_TYPE_LINE = "        type=CourseEvaluateChatHook,  # no repeated answers\n"


def _cpu_edits(profile: Profile) -> list[Edit]:
    """float32, OptimWrapper, gloo and the CPU patches: what ``xtuner train`` needs without a GPU."""
    edits = [
        _literal("import AmpOptimWrapper,", "import OptimWrapper,"),
        _literal("type=AmpOptimWrapper,", "type=OptimWrapper,"),
        _literal('    loss_scale="dynamic",\n    dtype="float16",\n', "", "drop AMP loss_scale and dtype"),
        _literal('dist_cfg=dict(backend="nccl")', 'dist_cfg=dict(backend="gloo")'),
        _literal("from xtuner.engine.runner import TrainLoop\n",
                 "from xtuner.engine.runner import TrainLoop\nfrom helpers.hooks import CourseEvaluateChatHook\n"),
        _literal("        type=EvaluateChatHook,\n", HOOK_TYPE_LINE,
                 "use the course's evaluation hook (XTuner's, without its repeats)"),
        Edit("append the CPU adaptations", r"\Z", CPU_PATCHES.replace("\\", "\\\\")),
    ]
    if profile.method == "qlora":
        edits.append(_literal("bnb_4bit_compute_dtype=torch.float16,", "bnb_4bit_compute_dtype=torch.float32,"))
    if profile.cpu_bf16_autocast:
        edits += [_literal("type=OptimWrapper,", "type=CpuAutocastOptimWrapper,  # bfloat16 forward where the CPU has it",
                           "train the forward pass in bfloat16 where the CPU computes it natively"),
                  _literal("from helpers.hooks import CourseEvaluateChatHook\n",
                           "from helpers.cpu_amp import CpuAutocastOptimWrapper\nfrom helpers.hooks import CourseEvaluateChatHook\n")]
    return edits


def write_edited(source: Path, dest: Path, edits: list[Edit], overwrite: bool = False) -> Path:
    """Write ``source`` with ``edits`` applied to ``dest`` (atomic; ``source`` is untouched) (03_xtuner_config)."""
    text = _apply_edits(Path(source).read_text(encoding="utf-8"), edits, str(source))
    return files.atomic_write_text(dest, text, overwrite=overwrite)


def data_edits(data_path: Path, max_iters: int | None = None, answer_only_at_end: bool = False) -> list[Edit]:
    """Turn an edited course config into the same run on other data (optionally another length) (07_evaluate).

    ``answer_only_at_end`` (iteration-budget configs with the course's evaluation hook: cpu, tiny): the hook answers
    once, after the last iteration, which is also the only checkpoint. Training is unchanged."""
    edits = [_setting("data_path", repr(str(data_path)))]
    if max_iters:
        edits.append(_setting("max_iters", str(max_iters)))
    if answer_only_at_end:
        edits += [_literal(HOOK_TYPE_LINE, HOOK_TYPE_LINE + "        answer_before_train=False,\n",
                           "answer only at the end (needs the course's evaluation hook: the cpu and tiny configs)"),
                  Edit("answer only at the end (needs an iteration budget: max_iters)", r"^(max_iters = .*)$", r"\1"),
                  _setting("save_steps", "max_iters"), _setting("evaluation_freq", "max_iters")]
    return edits


def write_check_config(profile: Profile, base_model: Path, data_file: Path, configs_dir: Path, system: str = "",
                       overwrite: bool = False) -> Path:
    """A course config that trains on ``data_file``, for ``xtuner check-custom-dataset`` (02_your_own_data)."""
    folder = Path(configs_dir) / CHECK_DIR
    copied = copy_config(profile.base_config, folder, overwrite=overwrite)
    edits = course_edits(profile, base_model, data_file, "conversation", ["hello"], system=system)
    return write_edited(copied, folder / f"check_{Path(data_file).stem}.py", edits, overwrite=overwrite)


def unified_diff(before: Path, after: Path) -> str:
    """The learner-facing diff between two config files (03_xtuner_config)."""
    a = Path(before).read_text(encoding="utf-8").splitlines(keepends=True)
    b = Path(after).read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=Path(before).name, tofile=Path(after).name))


def load_config(path: Path):
    """Load a config with mmengine's ``Config.fromfile``, as ``xtuner train`` will (03_xtuner_config)."""
    from mmengine.config import Config

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config {path} does not exist. Run notebook 03 first.")
    return Config.fromfile(str(path))


def check_config_data(cfg) -> str:
    """Validate the config's training file against its ``dataset_map_fn`` before training; returns the format (03_xtuner_config)."""
    dataset = cfg.train_dataloader.dataset
    map_fn = dataset.dataset_map_fn
    name = None if map_fn is None else getattr(map_fn, "__name__", str(map_fn))
    return validation.validate_file(Path(dataset.dataset.data_files["train"]), name)
