import pytest

from helpers import cli, data, formats, profiles, xconfig

BUILTIN = "internlm2_chat_1_8b_qlora_alpaca_e3"


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """One real ``xtuner copy-cfg`` for the module."""
    return xconfig.copy_config(BUILTIN, tmp_path_factory.mktemp("configs"))


@pytest.fixture
def train_file(tmp_path):
    return formats.write_jsonl(data.build_self_cognition("小智", "书生学员", 8), tmp_path / "train.jsonl")


def _edited(copied, tmp_path, prof, train_file, fmt="conversation", model="/models/m"):
    edits = xconfig.course_edits(prof, model, train_file, fmt, ["你是谁？"], system="")
    return xconfig.write_edited(copied, tmp_path / f"course_{prof.name}.py", edits)


def test_copy_cfg_is_the_builtin_and_never_clobbers(copied):
    assert copied.name == f"{BUILTIN}_copy.py"
    assert "pretrained_model_name_or_path = \"internlm/internlm2-chat-1_8b\"" in copied.read_text()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        xconfig.copy_config(BUILTIN, copied.parent)


def test_copy_of_unknown_config_shows_xtuner_error(tmp_path):
    with pytest.raises(cli.XtunerError, match="xtuner list-cfg"):
        xconfig.copy_config("no_such_config_e3", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_list_configs_finds_the_course_config():
    assert BUILTIN in xconfig.list_configs("internlm2_chat_1_8b_qlora")


def _cpu_wrapper(prof) -> str:
    """The optimizer wrapper a CPU profile's configs name: bfloat16 autocast (cpu) or plain float32 (tiny)."""
    return "CpuAutocastOptimWrapper" if prof.cpu_bf16_autocast else "OptimWrapper"


@pytest.mark.parametrize("name", ["tiny", "cpu"])
def test_cpu_profiles_load_with_cpu_adaptations(copied, tmp_path, train_file, name):
    prof = profiles.get_profile(name)
    cfg = xconfig.load_config(_edited(copied, tmp_path, prof, train_file))
    assert cfg.pretrained_model_name_or_path == "/models/m"
    assert cfg.train_dataloader.dataset.dataset.data_files == {"train": str(train_file)}
    assert cfg.train_dataloader.dataset.dataset_map_fn is None
    assert cfg.train_cfg.max_iters == prof.max_iters and "max_epochs" not in cfg.train_cfg
    assert cfg.optim_wrapper.type.__name__ == _cpu_wrapper(prof) and "loss_scale" not in cfg.optim_wrapper
    assert cfg.env_cfg.dist_cfg.backend == "gloo"
    assert str(cfg.model.llm.torch_dtype) == "torch.float32" and cfg.model.lora.lora_dropout == prof.lora_dropout
    if prof.method == "qlora":
        assert str(cfg.model.llm.quantization_config.bnb_4bit_compute_dtype) == "torch.float32"
    else:
        assert "quantization_config" not in cfg.model.llm
    assert cfg.model.lora.r == prof.lora_r and cfg.lr == prof.lr
    assert cfg.param_scheduler[0].end == prof.warmup_iters and cfg.param_scheduler[1].end == prof.max_iters
    assert xconfig.check_config_data(cfg) == "conversation"
    # speed on a CPU: no activation recomputation, data prepared in one process, no repeated evaluation answers
    assert cfg.model.use_activation_checkpointing is False and cfg.train_dataloader.dataset.map_num_proc == 1
    assert [h.type.__name__ for h in cfg.custom_hooks][1] == "CourseEvaluateChatHook"


def test_gpu_profile_keeps_the_gpu_settings(copied, tmp_path, train_file):
    path = _edited(copied, tmp_path, profiles.get_profile("gpu"), train_file)
    cfg = xconfig.load_config(path)
    assert cfg.optim_wrapper.type.__name__ == "AmpOptimWrapper" and cfg.optim_wrapper.dtype == "float16"
    assert cfg.env_cfg.dist_cfg.backend == "nccl" and cfg.train_cfg.max_epochs == 3
    assert cfg.model.llm.trust_remote_code is True and cfg.prompt_template["SUFFIX"] == "<|im_end|>"
    assert "CPU adaptations" not in path.read_text()
    # XTuner's defaults: activation checkpointing on, 32 processes for the data, its own evaluation hook
    assert "use_activation_checkpointing" not in cfg.model and "map_num_proc" not in cfg.train_dataloader.dataset
    assert [h.type.__name__ for h in cfg.custom_hooks][1] == "EvaluateChatHook"


def test_openai_data_gets_openai_map_fn(copied, tmp_path, train_file):
    oa = formats.write_jsonl([formats.to_openai(r) for r in formats.read_jsonl(train_file)], tmp_path / "oa.jsonl")
    cfg = xconfig.load_config(_edited(copied, tmp_path, profiles.get_profile("tiny"), oa, fmt="openai"))
    assert cfg.train_dataloader.dataset.dataset_map_fn.__name__ == "openai_map_fn"
    assert xconfig.check_config_data(cfg) == "openai"


def test_mismatched_map_fn_is_caught_before_training(copied, tmp_path, train_file):
    oa = formats.write_jsonl([formats.to_openai(r) for r in formats.read_jsonl(train_file)], tmp_path / "oa.jsonl")
    cfg = xconfig.load_config(_edited(copied, tmp_path, profiles.get_profile("tiny"), oa, fmt="conversation"))
    with pytest.raises(formats.DataFormatError, match="needs dataset_map_fn=openai_map_fn, but the config uses None"):
        xconfig.check_config_data(cfg)


def test_plain_lora_drops_quantization(copied, tmp_path, train_file):
    prof = profiles.get_profile("cpu", method="lora")
    cfg = xconfig.load_config(_edited(copied, tmp_path, prof, train_file))
    assert "quantization_config" not in cfg.model.llm


def test_absent_edit_target_fails_loudly(copied, tmp_path):
    edited = tmp_path / "x.py"
    with pytest.raises(xconfig.ConfigEditError, match=f"{BUILTIN}_copy.py: cannot set no_such_setting"):
        xconfig.write_edited(copied, edited, [xconfig._setting("no_such_setting", "1")])
    assert not edited.exists()
    text = copied.read_text().replace('dist_cfg=dict(backend="nccl")', "dist_cfg=dict()")
    with pytest.raises(xconfig.ConfigEditError, match="my_config.py: cannot replace 'dist_cfg=dict\\(backend=\"nccl\"\\)'"):
        xconfig._apply_edits(text, xconfig._cpu_edits(profiles.get_profile("cpu")), "my_config.py")


def test_edits_do_not_touch_the_copy_and_diff_shows_them(copied, tmp_path, train_file):
    original = copied.read_text()
    edited = _edited(copied, tmp_path, profiles.get_profile("cpu"), train_file)
    assert copied.read_text() == original
    diff = xconfig.unified_diff(copied, edited)
    assert '-    dist_cfg=dict(backend="nccl"),' in diff and '+    dist_cfg=dict(backend="gloo"),' in diff
    with pytest.raises(FileExistsError):
        _edited(copied, tmp_path, profiles.get_profile("cpu"), train_file)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Run notebook 03 first"):
        xconfig.load_config(tmp_path / "nope.py")


def test_data_edits_change_only_the_data_and_length(copied, tmp_path, train_file):
    """07's no-mix run: the same config on other data; the diff holds exactly those lines."""
    config = _edited(copied, tmp_path, profiles.get_profile("cpu"), train_file)
    other = formats.write_jsonl(data.build_self_cognition("小智", "书生学员", 4), tmp_path / "identity_only.jsonl")
    variant = xconfig.write_edited(config, tmp_path / "variant.py", xconfig.data_edits(other, max_iters=12))
    changed = [l for l in xconfig.unified_diff(config, variant).splitlines() if l[:1] in "+-" and l[:3] not in ("+++", "---")]
    assert changed == [f"-data_path = {str(train_file)!r}", f"+data_path = {str(other)!r}",
                       "-max_iters = 60", "+max_iters = 12"]
    cfg = xconfig.load_config(variant)
    assert cfg.train_dataloader.dataset.dataset.data_files["train"] == str(other) and cfg.train_cfg.max_iters == 12


def test_data_edits_answer_only_at_end_keep_the_training_and_refuse_the_gpu_hook(copied, tmp_path, train_file):
    """07's no-mix run on cpu: one round of sample answers (after the last iteration), one checkpoint, same training."""
    config = _edited(copied, tmp_path, profiles.get_profile("cpu"), train_file)
    variant = xconfig.write_edited(config, tmp_path / "variant.py",
                                   xconfig.data_edits(train_file, answer_only_at_end=True))
    cfg, before = xconfig.load_config(variant), xconfig.load_config(config)
    hook = cfg.custom_hooks[1]
    assert hook.type.__name__ == "CourseEvaluateChatHook" and hook.answer_before_train is False
    assert hook.every_n_iters == 60 and cfg.default_hooks.checkpoint.interval == 60
    assert cfg.optim_wrapper == before.optim_wrapper and cfg.model == before.model and cfg.train_cfg == before.train_cfg
    gpu = _edited(copied, tmp_path, profiles.get_profile("gpu"), train_file)
    with pytest.raises(xconfig.ConfigEditError, match="needs the course's evaluation hook"):
        xconfig.write_edited(gpu, tmp_path / "gpu_variant.py", xconfig.data_edits(train_file, answer_only_at_end=True))


def test_data_edits_on_an_epoch_config_refuse_max_iters(copied, tmp_path, train_file):
    config = _edited(copied, tmp_path, profiles.get_profile("gpu"), train_file)
    with pytest.raises(xconfig.ConfigEditError, match="set max_iters"):
        xconfig.write_edited(config, tmp_path / "variant.py", xconfig.data_edits(train_file, max_iters=12))


# --- continued pre-training (09) ------------------------------------------------------------------

@pytest.fixture(scope="module")
def pretrain_copy(tmp_path_factory):
    return xconfig.copy_config(profiles.get_profile("cpu").pretrain_config, tmp_path_factory.mktemp("pretrain"))


def _pretrain(pretrain_copy, tmp_path, name, iters=12):
    prof = profiles.get_profile(name)
    data_file = tmp_path / "corpus.jsonl"
    edits = xconfig.pretrain_edits(prof, "/models/m", data_file, ["青石镇位于"], iters)
    path = xconfig.write_edited(pretrain_copy, tmp_path / f"pretrain_{name}.py", edits)
    return prof, data_file, path, xconfig.load_config(path)


@pytest.mark.parametrize("name", ["tiny", "cpu", "gpu"])
def test_pretrain_config_is_lora_on_the_corpus_for_every_profile(pretrain_copy, tmp_path, name):
    prof, data_file, path, cfg = _pretrain(pretrain_copy, tmp_path, name)
    assert "full" in pretrain_copy.name and "lora" not in pretrain_copy.read_text().lower()  # built-in: every weight
    assert cfg.model.type.__name__ == "SupervisedFinetune" and cfg.model.lora.type.__name__ == "LoraConfig"
    assert (cfg.model.lora.r, cfg.model.lora.lora_alpha) == (prof.lora_r, prof.lora_alpha) and cfg.lr == prof.lr
    assert cfg.model.lora.lora_dropout == prof.lora_dropout
    assert cfg.data_files == [str(data_file)] and cfg.train_dataloader.dataset.dataset.data_files == [str(data_file)]
    assert cfg.train_dataloader.dataset.dataset_map_fn is None and cfg.train_dataloader.dataset.template_map_fn is None
    assert cfg.train_dataloader.dataset.max_length == prof.max_length and cfg.pack_to_max_length is True
    assert cfg.train_cfg.max_iters == 12 and cfg.param_scheduler[1].end == 12 and cfg.accumulative_counts == 1
    assert cfg.default_hooks.checkpoint.interval == 12 and cfg.custom_hooks[1].every_n_iters == 12
    assert cfg.custom_hooks[1].evaluation_inputs == ["青石镇位于"] and "prompt_template" not in cfg.custom_hooks[1]
    assert cfg.custom_hooks[1].max_new_tokens == prof.max_new_tokens
    assert cfg.model.llm.trust_remote_code is prof.trust_remote_code
    if prof.device == "cpu":
        assert cfg.optim_wrapper.type.__name__ == _cpu_wrapper(prof) and cfg.env_cfg.dist_cfg.backend == "gloo"
        assert "CPU adaptations" in path.read_text() and cfg.custom_hooks[1].type.__name__ == "CourseEvaluateChatHook"
        assert cfg.model.use_activation_checkpointing is False and cfg.train_dataloader.dataset.map_num_proc == 1
    else:
        assert cfg.optim_wrapper.type.__name__ == "AmpOptimWrapper" and cfg.env_cfg.dist_cfg.backend == "nccl"
        assert "CPU adaptations" not in path.read_text() and "use_activation_checkpointing" not in cfg.model


def test_pretrain_edits_on_the_sft_config_fail_loudly(copied, tmp_path):
    edits = xconfig.pretrain_edits(profiles.get_profile("cpu"), "/models/m", tmp_path / "c.jsonl", ["x"], 10)
    with pytest.raises(xconfig.ConfigEditError, match="cannot set data_files: expected 1 match"):
        xconfig.write_edited(copied, tmp_path / "wrong.py", edits)
    assert not (tmp_path / "wrong.py").exists()


@pytest.fixture(scope="module")
def preference_copies(tmp_path_factory):
    prof, folder = profiles.get_profile("cpu"), tmp_path_factory.mktemp("preference")
    return {"dpo": xconfig.copy_config(prof.dpo_config, folder), "orpo": xconfig.copy_config(prof.orpo_config, folder)}


@pytest.mark.parametrize("method", ["dpo", "orpo"])
@pytest.mark.parametrize("name", ["tiny", "cpu", "gpu"])
def test_preference_config_is_lora_on_local_pairs_for_every_profile(preference_copies, tmp_path, name, method):
    prof, data_file = profiles.get_profile(name), tmp_path / "pairs.jsonl"
    edits = xconfig.preference_edits(prof, method, "/models/m", data_file, ["你是谁？"], 12, beta=0.2)
    path = xconfig.write_edited(preference_copies[method], tmp_path / f"{method}_{name}.py", edits)
    cfg = xconfig.load_config(path)
    assert "lora" not in preference_copies[method].read_text().lower()  # built-in: every weight, data from the hub
    assert cfg.model.type.__name__ == method.upper() and cfg.model.beta == 0.2 and cfg.lr == prof.preference_lr
    assert (cfg.model.lora.r, cfg.model.lora.lora_alpha, cfg.model.lora.lora_dropout) == (
        prof.lora_r, prof.lora_alpha, prof.lora_dropout)
    dataset = cfg.train_dataloader.dataset
    assert dataset.dataset.type.__name__ == "load_jsonl_dataset" and dataset.dataset.data_files == [str(data_file)]
    assert dataset.dataset_map_fn is None and dataset.max_length == prof.max_length and dataset.is_dpo is True
    assert cfg.tokenizer.chat_template == formats.CHATML and "mlabonne" not in path.read_text()
    assert cfg.train_cfg.max_iters == 12 and cfg.default_hooks.checkpoint.interval == 12
    assert cfg.custom_hooks[-1].evaluation_inputs == ["你是谁？"] and cfg.custom_hooks[-1].max_new_tokens == prof.max_new_tokens
    assert cfg.SYSTEM == "" and cfg.model.llm.trust_remote_code is prof.trust_remote_code
    warmup, cosine = cfg.param_scheduler
    assert warmup.begin < warmup.end == cosine.begin < cosine.end == 12  # mmengine refuses a warm-up of 0 iterations
    if prof.device == "cpu":
        assert "quantization_config" not in cfg.model.llm and cfg.optim_wrapper.type.__name__ == _cpu_wrapper(prof)
        assert cfg.model.use_activation_checkpointing is False and dataset.num_proc == 1
        assert cfg.custom_hooks[-1].type.__name__ == "CourseEvaluateChatHook"
    else:  # QLoRA on the GPU
        assert cfg.model.llm.quantization_config.load_in_4bit is True and cfg.optim_wrapper.type.__name__ == "AmpOptimWrapper"
        assert cfg.model.llm.quantization_config.type.__name__ == "BitsAndBytesConfig" and cfg.env_cfg.dist_cfg.backend == "nccl"


@pytest.mark.parametrize("name", ["tiny", "cpu", "gpu"])
def test_pretrain_warmup_is_never_empty(pretrain_copy, tmp_path, name):
    warmup, cosine = _pretrain(pretrain_copy, tmp_path, name, iters=3)[3].param_scheduler
    assert warmup.begin < warmup.end <= cosine.begin < cosine.end == 3


def test_preference_edits_on_the_sft_config_fail_loudly(copied, tmp_path):
    edits = xconfig.preference_edits(profiles.get_profile("cpu"), "dpo", "/models/m", tmp_path / "p.jsonl", ["x"], 10)
    with pytest.raises(xconfig.ConfigEditError, match="cannot replace .orpo_dpo_mix_40k_map_fn"):
        xconfig.write_edited(copied, tmp_path / "wrong.py", edits)
    assert not (tmp_path / "wrong.py").exists()
