import json

import pytest

from helpers import data, formats, validation


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
    record = formats.conversation_record("Q?", "A.", system="S")
    assert formats.to_openai(record) == {"messages": [{"role": "system", "content": "S"},
                                                   {"role": "user", "content": "Q?"},
                                                   {"role": "assistant", "content": "A."}]}


def test_jsonl_round_trip_and_formats(tmp_path, records):
    conv = formats.write_jsonl(records, tmp_path / "c.jsonl")
    oa = formats.write_jsonl([formats.to_openai(r) for r in records], tmp_path / "o.jsonl")
    assert formats.read_jsonl(conv) == records
    assert conv.read_text(encoding="utf-8").count("\n") == 40 and "小智" in conv.read_text(encoding="utf-8")
    assert validation.validate_file(conv) == "conversation" and validation.validate_file(oa) == "openai"
    assert validation.validate_file(conv, None) == "conversation"
    assert validation.validate_file(oa, "openai_map_fn") == "openai"


def test_write_refuses_to_clobber_and_empty(tmp_path, records):
    path = formats.write_jsonl(records, tmp_path / "d.jsonl")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        formats.write_jsonl(records[:3], path)
    assert path.read_bytes() == before
    with pytest.raises(formats.DataFormatError, match="no records"):
        formats.write_jsonl([], tmp_path / "empty.jsonl")


@pytest.mark.parametrize("content, message", [
    ('{"conversation": [{"input": "a", "output": "b"}]}\n{"conversation": [\n', r"line 2, column \d+: invalid JSON"),
    ('[{"conversation": [{"input": "a", "output": "b"}]}]', "JSON array, not JSON Lines"),
    ("\n\n", "is empty"),
    ('"just a string"\n', "line 1: expected a JSON object"),
])
def test_read_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(formats.DataFormatError, match=message) as err:
        formats.read_jsonl(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("relative, fix", [
    ("workspace/data/self_cognition.jsonl", "Notebook 01 writes it: run notebook 01 first"),
    ("workspace/data/own_data_train.jsonl", "Notebook 02 writes it: run notebook 02 first"),
    ("my_files/self_cognition.jsonl", "Check the path and the file name"),  # the learner's own file, same name
    ("workspace/data/my_own.jsonl", "Check the path and the file name"),
])
def test_missing_file_names_the_file_and_its_fix(tmp_path, relative, fix):
    with pytest.raises(formats.DataFormatError, match=fix) as err:
        formats.read_jsonl(tmp_path / relative)
    assert str(err.value).startswith(f"{tmp_path / relative} does not exist.")


@pytest.mark.parametrize("records, message", [
    ([{"conversation": [{"input": "q", "output": " "}]}], "line 1: conversation.0.output: Value error, 'output' is empty"),
    ([{"conversation": [{"input": "q"}]}], "line 1: conversation.0.output: Field required"),
    ([{"conversation": []}], "line 1: conversation"),
    ([{"text": "hello"}], "unknown format with keys \\['text'\\]"),
    ([{"instruction": "q", "output": "a"}], "line 1: unknown format .* Expected one of: 'conversation'"),  # not trained on
    ([{"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}]}], "two 'user' messages in a row"),
    ([{"messages": [{"role": "user", "content": "q"}]}], "the last message is not from the assistant"),
    ([{"messages": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "a"}]}], "message 1 has role 'bot'"),
    ([{"conversation": [{"input": "q", "output": "a"}]}, {"messages": []}], "line 2: format differs"),
])
def test_validation_errors(tmp_path, records, message):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with pytest.raises(formats.DataFormatError, match=message):
        validation.validate_file(path)


def test_map_fn_mismatch_is_explained(tmp_path, records):
    path = formats.write_jsonl(records, tmp_path / "c.jsonl")
    with pytest.raises(formats.DataFormatError, match="needs dataset_map_fn=None, but the config uses openai_map_fn"):
        validation.validate_file(path, "openai_map_fn")
    oa = formats.write_jsonl([formats.to_openai(r) for r in records], tmp_path / "o.jsonl")
    with pytest.raises(formats.DataFormatError, match="needs dataset_map_fn=openai_map_fn.*KeyError"):
        validation.validate_file(oa, None)


def test_strict_mode_lets_duplicates_and_late_system_prompts_through(tmp_path):
    record = {"conversation": [{"input": "q", "output": "a"}, {"system": "late", "input": "q2", "output": "a2"}]}
    path = formats.write_jsonl([record, record], tmp_path / "d.jsonl")
    assert validation.validate_file(path) == "conversation"  # the report lists both; neither stops XTuner


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes('\ufeff{"conversation": [{"input": "问", "output": "答"}]}\n'.encode("utf-8"))
    assert validation.validate_file(path) == "conversation"


def test_trim_to_sentence():
    assert data.trim_to_sentence("It is Paris. And the riv") == "It is Paris."
    assert data.trim_to_sentence("长城很长。它在中") == "长城很长。"
    assert data.trim_to_sentence("no end") == "no end"


def test_token_lengths_match_xtuner_encoding(tiny_model, records, reference_token_lengths):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    mixed = records[:3] + [formats.to_openai(records[0])]
    lengths = validation.token_lengths(mixed, tok, "qwen_chat")
    assert lengths == reference_token_lengths(mixed, tok, "qwen_chat")
    assert lengths[0] == lengths[3]  # openai and conversation encode identically
    assert records[0]["conversation"][0]["input"] == data.build_self_cognition("小智", "书生学员", 40, 1)[0]["conversation"][0]["input"]
    summary = validation.length_summary(lengths, max_length=min(lengths))
    assert summary["truncated"] == sum(n > min(lengths) for n in lengths) and summary["max_tokens"] == max(lengths)


def test_heldout_identity_questions_never_enter_training():
    """Every question the 01 generator can pick is outside the held-out set, and each held-out item has references."""
    templates = data.load_self_cognition_templates()
    trainable = {q for qs in templates["questions"].values() for q in qs}
    heldout = data.heldout_identity("小智", "书生学员")
    assert heldout and not trainable & {h["question"] for h in heldout}
    for item in heldout:
        assert item["keywords"] == ["小智"] and all("小智" in r and "{" not in r for r in item["references"])
        assert len(item["references"]) == len(templates["answers"][item["lang"]])
    every = data.build_self_cognition("小智", "书生学员", n=10_000)
    assert not {r["conversation"][0]["input"] for r in every} & {h["question"] for h in heldout}


def test_eval_items_take_the_first_turn():
    records = [formats.conversation_record("怎么写简历？", "一页，突出成果。", "你是顾问。")]
    assert data.eval_items(records) == [{"question": "怎么写简历？", "system": "你是顾问。",
                                         "references": ["一页，突出成果。"], "keywords": []}]


def test_identity_preference_pairs_hold_out_questions_and_both_answers():
    questions, heldout_questions = data.preference_questions(), data.preference_questions(heldout=True)
    train = data.identity_preference_pairs("小智", "书生学员")
    heldout = data.identity_preference_pairs("小智", "书生学员", heldout=True)
    assert [p["prompt"][-1]["content"] for p in train] == questions and len(heldout) == len(heldout_questions) == 12
    assert not set(questions) & set(heldout_questions)
    side = lambda pairs, key: {p[key][0]["content"] for p in pairs}
    for key in ("chosen", "rejected"):  # each language's last template is held out
        assert not side(train, key) & side(heldout, key) and len(side(heldout, key)) == 2
    assert all("小智" in c and "书生学员" in c for c in side(train, "chosen") | side(heldout, "chosen"))
    assert not any("小智" in r for r in side(train, "rejected") | side(heldout, "rejected"))
    own = {q: f"base answer to {q}" for q in questions}
    assert [p["rejected"][0]["content"] for p in data.identity_preference_pairs("小智", "书生学员", rejected=own)] == list(own.values())
    assert formats.schema_errors(train + heldout + data.load_preference_general(), "preference") == []
