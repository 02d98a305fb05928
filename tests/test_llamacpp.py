"""GGUF with llama.cpp's own converter and llama-cpp-python: the embedded SmolLM2 converted for real, its prompt,
tokens and greedy answers compared with transformers; the OpenAI-compatible server; the errors."""

import json

import pytest

from helpers import chat, files, llamacpp, models, profiles, serving

TEMPLATE = "qwen_chat"
QUESTIONS = ["What is the capital of France?", "你是谁？"]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """The embedded SmolLM2 (the cpu profile's base) as a model folder, and its f16 GGUF with the course template."""
    folder = models.prepare_base_model(profiles.get_profile("cpu"), tmp_path_factory.mktemp("models"))
    gguf = llamacpp.convert_to_gguf(folder, tmp_path_factory.mktemp("gguf") / "smollm2-f16.gguf",
                                    template_name=TEMPLATE)
    return folder, gguf


@pytest.fixture(autouse=True)
def stop_servers():
    yield
    serving.stop_all()


def test_the_gguf_carries_the_training_template_and_tokenises_as_transformers(smollm2):
    folder, gguf = smollm2
    llm = llamacpp._load_gguf(gguf)
    try:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"], eos_token="<|im_end|>",
                                        bos_token="<|im_start|>")  # what llama.cpp passes for SmolLM2
        rendered = formatter(messages=[{"role": "user", "content": QUESTIONS[1]}]).prompt
        assert rendered == chat.build_prompt(TEMPLATE, QUESTIONS[1])  # no duplicated BOS: the model has none
        tokenizer = chat.load_chat_model(folder).tokenizer
        assert llm.tokenize(rendered.encode(), add_bos=True, special=True) == tokenizer(
            rendered, add_special_tokens=False)["input_ids"]
    finally:
        llm.close()
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())  # the folder is unchanged


def test_quantised_files_are_smaller_and_the_table_compares_every_format(smollm2, capsys):
    folder, gguf = smollm2
    q8 = llamacpp.quantize(gguf, "q8_0")
    assert q8.name == "smollm2-q8_0.gguf" and "quant size" in capsys.readouterr().out
    assert q8.stat().st_size < 0.6 * gguf.stat().st_size
    rows, answers = llamacpp.compare_formats(folder, {"GGUF f16": gguf, "GGUF q8_0": q8}, QUESTIONS, TEMPLATE,
                                             max_new_tokens=16)
    assert [r["format"] for r in rows] == ["transformers fp32", "GGUF f16", "GGUF q8_0"]
    assert rows[0]["same_answers"] == "2/2" and answers["transformers fp32"][0].startswith("The capital of France is Paris")
    assert answers["GGUF f16"] == answers["transformers fp32"]  # f16 keeps every greedy choice on these questions
    assert all(r["tokens_per_s"] > 0 and r["size_mb"] > 0 for r in rows)
    with pytest.raises(files.OutputExistsError):
        llamacpp.quantize(gguf, "q8_0")


def test_the_openai_server_answers_as_the_file_does(smollm2, tmp_path):
    _, gguf = smollm2
    llm = llamacpp._load_gguf(gguf)
    expected = llamacpp._gguf_answers(llm, QUESTIONS[:1], TEMPLATE, max_new_tokens=16)[0]
    llm.close()
    api = serving.start_llama_server(gguf, log_dir=tmp_path)
    assert api.url.startswith("http://127.0.0.1:")
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    assert serving.chat_completion(api.url, messages, max_tokens=16, repeat_penalty=1.0).strip() == expected
    pieces = list(serving.chat_completion(api.url, messages, max_tokens=16, stream=True, repeat_penalty=1.0))
    assert len(pieces) > 1 and "".join(pieces).strip() == expected
    api.stop()
    assert api.process.poll() is not None


def test_an_unknown_tokenizer_shows_the_converters_own_error(tiny_model, tmp_path):
    out = tmp_path / "tiny-f16.gguf"
    with pytest.raises(llamacpp.UnknownTokenizerError, match="BPE pre-tokenizer was not recognized"):
        llamacpp.convert_to_gguf(tiny_model, out, template_name=TEMPLATE)
    assert list(tmp_path.iterdir()) == []  # no partial file, no staging folder left


def test_conversion_refuses_to_overwrite_and_bad_requests_are_clear(tiny_model, tmp_path):
    existing = tmp_path / "mine.gguf"
    existing.write_text("the learner's file")
    with pytest.raises(files.OutputExistsError):
        llamacpp.convert_to_gguf(tiny_model, existing)
    assert existing.read_text() == "the learner's file"
    with pytest.raises(ValueError, match="unknown quantisation type 'q3_x'; choose one of q8_0"):
        llamacpp.quantize(existing, "q3_x")
    with pytest.raises(FileNotFoundError, match="convert the model first"):
        llamacpp.quantize(tmp_path / "missing-f16.gguf", "q4_0")
    with pytest.raises(FileNotFoundError, match="section 2"):
        serving.start_llama_server(tmp_path / "missing.gguf")
