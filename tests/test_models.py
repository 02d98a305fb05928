import json

import pytest

from helpers import models, profiles


def test_tiny_model_tokenizer_is_chatml(tiny_model):
    from transformers import AutoTokenizer
    from xtuner.dataset.utils import get_bos_eos_token_ids

    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = "<|im_start|>user\n你是谁？ Who are you?<|im_end|>\n"
    ids = tok(text).input_ids
    assert tok.decode(ids) == text  # byte-level BPE: lossless, Chinese included
    assert tok.eos_token == "<|im_end|>" and tok.bos_token is None
    assert get_bos_eos_token_ids(tok) == ([], [tok.eos_token_id])  # xtuner adds no bos before the ChatML template
    assert not (tiny_model / "tokenizer.model").exists()


def test_tiny_model_is_reused(tiny_model):
    before = (tiny_model / "model.safetensors").stat().st_mtime
    assert models.build_tiny_model(tiny_model) == tiny_model
    assert (tiny_model / "model.safetensors").stat().st_mtime == before


def test_model_config_eos_matches_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    config = json.loads((tiny_model / "config.json").read_text())
    generation = json.loads((tiny_model / "generation_config.json").read_text())
    assert config["eos_token_id"] == generation["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")


def test_embedded_gguf_is_found():
    gguf = models._find_smollm2_gguf()
    assert gguf.name == models.SMOLLM2_GGUF and gguf.stat().st_size > 50e6


def test_gguf_name_map_is_built_once_while_unpacking_and_restored_after():
    import gguf

    original = gguf.get_tensor_name_map
    with models._gguf_name_map_built_once():
        first = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 30)
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 30) is first
        assert first.get_name("model.layers.29.self_attn.q_proj") == "blk.29.attn_q"
    assert gguf.get_tensor_name_map is original


def test_missing_model_path_is_explained(tmp_path):
    with pytest.raises(models.ModelNotFoundError, match="does not exist. Check the model_path"):
        models.prepare_base_model(profiles.get_profile("gpu"), tmp_path, model_path=str(tmp_path / "nope"))


def test_folder_without_config_is_explained(tmp_path):
    with pytest.raises(models.ModelNotFoundError, match="no config.json"):
        models.check_model_dir(tmp_path)


def test_dotted_folder_name_is_refused(tmp_path):
    folder = tmp_path / "InternLM2.5-7B"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(models.ModelNotFoundError, match="Rename the folder, e.g. 'InternLM2_5-7B'"):
        models.check_model_dir(folder)


def test_explicit_path_wins(tmp_path, tiny_model):
    assert models.prepare_base_model(profiles.get_profile("gpu"), tmp_path, model_path=str(tiny_model)) == tiny_model


def _fake_model(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_gpu_resolution_prefers_internstudio_share(tmp_path, fake_root):
    shared = _fake_model(fake_root / "root/share/new_models" / profiles.INTERNLM2_CHAT_1_8B)
    assert models.prepare_base_model(profiles.get_profile("gpu"), tmp_path / "models") == shared


def test_gpu_resolution_downloads_with_modelscope_into_autodl_disk(tmp_path, monkeypatch, fake_root):
    import sys
    import types

    calls = []

    def snapshot_download(model_id, cache_dir):
        calls.append((model_id, cache_dir))
        return str(_fake_model(tmp_path / "dl" / "internlm2-chat-1_8b"))

    (fake_root / "root/autodl-tmp").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "modelscope", types.SimpleNamespace(snapshot_download=snapshot_download))
    path = models.prepare_base_model(profiles.get_profile("gpu"), tmp_path / "models")
    assert path.name == "internlm2-chat-1_8b"
    assert calls == [(profiles.INTERNLM2_CHAT_1_8B, str(fake_root / "root/autodl-tmp/models"))]


def test_gpu_resolution_without_modelscope_says_what_to_do(tmp_path, monkeypatch, fake_root):
    import sys

    monkeypatch.setitem(sys.modules, "modelscope", None)  # import fails
    with pytest.raises(models.ModelNotFoundError, match="pip install modelscope"):
        models.prepare_base_model(profiles.get_profile("gpu"), tmp_path / "models")
