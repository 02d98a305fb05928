import json

import pytest

from helpers import data


@pytest.fixture
def records():
    return data.build_self_cognition("小智", "书生学员", n=40, seed=1)


def test_self_cognition_is_varied_and_seeded(records):
    assert len(records) == 40
    assert len({r["conversation"][0]["input"] for r in records}) > 15
    assert len({r["conversation"][0]["output"] for r in records}) > 10
    assert all("小智" in r["conversation"][0]["output"] and "{" not in r["conversation"][0]["output"] for r in records)
    assert records == data.build_self_cognition("小智", "书生学员", n=40, seed=1)
    assert records != data.build_self_cognition("小智", "书生学员", n=40, seed=2)


def test_languages_are_not_mixed():
    for r in data.build_self_cognition("Nova", "Ada", n=200):
        turn = r["conversation"][0]
        question_is_zh = any("\u4e00" <= c <= "\u9fff" for c in turn["input"])
        answer_is_zh = any("\u4e00" <= c <= "\u9fff" for c in turn["output"])
        assert question_is_zh == answer_is_zh, turn


def test_openai_conversion_keeps_system_and_order():
    record = data.conversation_record("Q?", "A.", system="S")
    assert data.to_openai(record) == {"messages": [{"role": "system", "content": "S"},
                                                   {"role": "user", "content": "Q?"},
                                                   {"role": "assistant", "content": "A."}]}


def test_jsonl_round_trip_and_formats(tmp_path, records):
    conv = data.write_jsonl(records, tmp_path / "c.jsonl")
    oa = data.write_jsonl([data.to_openai(r) for r in records], tmp_path / "o.jsonl")
    assert data.read_jsonl(conv) == records
    assert conv.read_text(encoding="utf-8").count("\n") == 40 and "小智" in conv.read_text(encoding="utf-8")
    assert data.validate_file(conv) == "conversation" and data.validate_file(oa) == "openai"
    assert data.validate_file(conv, None) == "conversation"
    assert data.validate_file(oa, "openai_map_fn") == "openai"


def test_write_refuses_to_clobber_and_empty(tmp_path, records):
    path = data.write_jsonl(records, tmp_path / "d.jsonl")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        data.write_jsonl(records[:3], path)
    assert path.read_bytes() == before
    with pytest.raises(data.DataFormatError, match="no records"):
        data.write_jsonl([], tmp_path / "empty.jsonl")


@pytest.mark.parametrize("content, message", [
    ('{"conversation": [{"input": "a", "output": "b"}]}\n{"conversation": [\n', r"line 2, column \d+: invalid JSON"),
    ('[{"conversation": [{"input": "a", "output": "b"}]}]', "JSON array, not JSON Lines"),
    ("\n\n", "is empty"),
    ('"just a string"\n', "line 1: expected a JSON object"),
])
def test_read_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(data.DataFormatError, match=message) as err:
        data.read_jsonl(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(data.DataFormatError, match="does not exist. Run notebook 01"):
        data.read_jsonl(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("records, message", [
    ([{"conversation": [{"input": "q", "output": " "}]}], "record 1: conversation.0.output: Value error, 'output' is empty"),
    ([{"conversation": [{"input": "q"}]}], "record 1: conversation.0.output: Field required"),
    ([{"conversation": []}], "record 1: conversation"),
    ([{"text": "hello"}], "unknown format with keys \\['text'\\]"),
    ([{"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}]}], "no 'assistant' message"),
    ([{"messages": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "a"}]}], "messages.0.role"),
    ([{"conversation": [{"input": "q", "output": "a"}]}, {"messages": []}], "record 2: format differs"),
])
def test_validation_errors(tmp_path, records, message):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with pytest.raises(data.DataFormatError, match=message):
        data.validate_file(path)


def test_map_fn_mismatch_is_explained(tmp_path, records):
    path = data.write_jsonl(records, tmp_path / "c.jsonl")
    with pytest.raises(data.DataFormatError, match="needs dataset_map_fn=None, but the config uses openai_map_fn"):
        data.validate_file(path, "openai_map_fn")
    oa = data.write_jsonl([data.to_openai(r) for r in records], tmp_path / "o.jsonl")
    with pytest.raises(data.DataFormatError, match="needs dataset_map_fn=openai_map_fn.*KeyError"):
        data.validate_file(oa, None)


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes('\ufeff{"conversation": [{"input": "问", "output": "答"}]}\n'.encode("utf-8"))
    assert data.validate_file(path) == "conversation"


def test_trim_to_sentence():
    assert data.trim_to_sentence("It is Paris. And the riv") == "It is Paris."
    assert data.trim_to_sentence("长城很长。它在中") == "长城很长。"
    assert data.trim_to_sentence("no end") == "no end"


def test_token_lengths_match_xtuner_encoding(tiny_model, records):
    from transformers import AutoTokenizer
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(tiny_model)
    lengths = data.token_lengths(records[:3] + [data.to_openai(records[0])], tok, "qwen_chat")
    example = json.loads(json.dumps(records[0]))
    example.update(template_map_fn_factory(template=PROMPT_TEMPLATE.qwen_chat)(example))
    ids = encode_fn(example, tok, max_length=10_000)["input_ids"]
    assert lengths[0] == len(ids) == lengths[3]  # openai and conversation encode identically
    assert records[0]["conversation"][0]["input"] == data.build_self_cognition("小智", "书生学员", 40, 1)[0]["conversation"][0]["input"]
    summary = data.length_summary(lengths, max_length=min(lengths))
    assert summary["truncated"] == sum(n > min(lengths) for n in lengths) and summary["max_tokens"] == max(lengths)
