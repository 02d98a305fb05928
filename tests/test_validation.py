"""The validation report: every problem by file and line, map_fn matching, token lengths, split, the real xtuner check."""

import json

import pytest

from helpers import cli, data, formats, profiles, validation, xconfig
from helpers.workspace import DATASETS_DIR


def write_lines(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def msgs(*pairs):
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


@pytest.fixture
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_clean_files_have_no_problems_and_the_right_map_fn():
    expected = {"math_qa.jsonl": None, "multi_turn.jsonl": None, "openai_messages.json": "openai_map_fn",
                "alpaca.json": "alpaca_map_fn", "sharegpt.jsonl": formats.FORMATS["sharegpt"].map_fn}
    for name, map_fn in expected.items():
        report = validation.validate(DATASETS_DIR / name)
        assert report.problems == [] and report.map_fn == map_fn and report.ok, name


@pytest.mark.parametrize("fmt, records, where, problem", [
    ("openai", [msgs(("user", "q"), ("assistant", "a")), msgs(("user", "q"), ("user", "q2"), ("assistant", "a"))],
     "line 2", "two 'user' messages in a row"),
    ("openai", [msgs(("user", "q"), ("assistant", "a")), msgs(("system", "s"), ("user", "q"))],
     "line 2", "the last message is not from the assistant"),
    ("openai", [msgs(("user", "q"), ("assistant", " "))], "line 1", "'output' is empty"),
    ("sharegpt", [{"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"},
                                     {"from": "gpt", "value": "a"}]}], "line 1", "starts with 'assistant'"),
    ("conversation", [{"conversation": [{"input": "q", "output": "a"}]}, {"conversation": [{"input": "", "output": "a"}]}],
     "line 2", "'input' is empty"),
    ("conversation", [{"conversation": [{"input": "q", "output": "a"}, {"system": "late", "input": "q", "output": "a"}]}],
     "line 1", "system is set on turn 2"),
    ("conversation", [{"conversation": [{"input": "q", "output": "a"}]}, {"conversation": [{"input": "q", "output": "a"}]}],
     "line 2", "duplicate of line 1"),
    ("alpaca", [{"instruction": "q", "input": "", "output": "a"}, {"instruction": "q", "input": "x", "output": ""}],
     "line 2", "'output' is missing or empty"),
])
def test_each_problem_is_reported_with_file_and_line(tmp_path, fmt, records, where, problem):
    path = write_lines(tmp_path / "d.jsonl", records)
    report = validation.validate(path)
    assert report.fmt == fmt and not report.ok
    found = [p for p in report.problems if p.where == where and problem in p.problem]
    assert found and found[0].file == str(path) and found[0].fix, report.problems
    assert report.problem_table().shape[0] == len(report.problems)


def test_all_problems_are_listed_not_just_the_first(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [
        msgs(("user", "q"), ("assistant", "a")),
        msgs(("user", "q"), ("user", "q"), ("assistant", "a")),
        msgs(("user", "q"), ("assistant", "")),
        msgs(("user", "q"), ("assistant", "a")),
        msgs(("user", "q")),
    ])
    report = validation.validate(path)
    assert [p.where for p in report.problems] == ["line 2", "line 3", "line 4", "line 5"]
    assert report.summary()["problems"] == 4


@pytest.mark.parametrize("fmt, records, chosen, message", [
    ("conversation", [{"conversation": [{"input": "q", "output": "a"}]}], "openai_map_fn",
     "needs dataset_map_fn=None, but the config uses openai_map_fn"),
    ("openai", [msgs(("user", "q"), ("assistant", "a"))], None,
     "needs dataset_map_fn=openai_map_fn, but the config uses None"),
    ("sharegpt", [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}], None,
     "'sharegpt' format.*formats.convert_file"),
])
def test_map_fn_mismatch_is_an_error(tmp_path, fmt, records, chosen, message):
    path = write_lines(tmp_path / "d.jsonl", records)
    with pytest.raises(formats.DataFormatError, match=message):
        validation.validate(path, dataset_map_fn=chosen)
    assert validation.validate(path, dataset_map_fn=formats.FORMATS[fmt].map_fn).fmt == fmt


def test_token_lengths_equal_xtuner_encoding(tokenizer, reference_token_lengths):
    records = formats.convert_loaded(formats.load_records(DATASETS_DIR / "multi_turn.jsonl"))
    records += formats.convert_loaded(formats.load_records(DATASETS_DIR / "math_qa.jsonl"))
    records += data.build_self_cognition("小智", "书生学员", 20)
    for template in ("qwen_chat", "internlm2_chat", "default"):
        fast = validation.token_lengths(records, tokenizer, template, batch_size=7)
        assert fast == reference_token_lengths(records, tokenizer, template), template
    assert all(n > 0 for n in fast)


def test_length_report_histogram_and_too_long(tmp_path, tokenizer):
    path = formats.write_jsonl(formats.convert_loaded(formats.load_records(DATASETS_DIR / "math_qa.jsonl")), tmp_path / "m.jsonl")
    lengths = validation.token_lengths(formats.read_jsonl(path), tokenizer, "qwen_chat")
    cut = sorted(lengths)[len(lengths) // 2]
    report = validation.validate(path, None, tokenizer, "qwen_chat", max_length=cut)
    assert report.token_counts == lengths and report.lengths["truncated"] == sum(n > cut for n in lengths) > 0
    assert report.lengths["truncated_share"] == round(report.lengths["truncated"] / len(lengths), 4) and not report.ok
    assert validation.too_long(lengths, cut) == [i for i, n in enumerate(lengths) if n > cut]
    png = tmp_path / "reports" / "lengths.png"
    validation.plot_lengths(lengths, cut, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_split_is_seeded_disjoint_and_complete():
    records = data.build_self_cognition("小智", "书生学员", 50)
    train, held = validation.split_records(records, 0.2, seed=3)
    assert len(held) == 10 and len(train) == 40
    assert (train, held) == validation.split_records(records, 0.2, seed=3)
    assert held != validation.split_records(records, 0.2, seed=4)[1]
    assert sorted(map(json.dumps, train + held)) == sorted(map(json.dumps, records))
    assert [r for r in records if r in held] == held  # original order kept
    assert validation.split_records(records, 0.0) == (records, [])
    with pytest.raises(ValueError, match="too few"):
        validation.split_records(records[:2], 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        validation.split_records(records, 1.0)


# --- the real xtuner check-custom-dataset ---------------------------------------------------------

@pytest.fixture(scope="module")
def check_config(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("own")
    train = formats.write_jsonl(formats.convert_loaded(formats.load_records(DATASETS_DIR / "multi_turn.jsonl")),
                             folder / "train.jsonl")
    return xconfig.write_check_config(profiles.get_profile("tiny"), tiny_model, train, folder / "configs")


def test_write_check_config_points_at_the_data_and_never_clobbers(check_config, tiny_model):
    cfg = xconfig.load_config(check_config)
    assert cfg.train_dataloader.dataset.dataset.data_files["train"].endswith("train.jsonl")
    assert cfg.train_dataloader.dataset.dataset_map_fn is None and cfg.pretrained_model_name_or_path == str(tiny_model)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        xconfig.write_check_config(profiles.get_profile("tiny"), tiny_model, check_config.parent.parent / "train.jsonl",
                                      check_config.parent.parent)


def test_xtuner_check_custom_dataset_accepts_converted_data(check_config):
    run = validation.check_custom_dataset(check_config)
    sections = validation.check_output_sections(run.output)
    assert "<|im_start|>user" in sections["dataset after adding templates"]
    assert "-100" in sections["encoded labels"] and sections["encoded input_ids"].startswith("[")


def test_xtuner_check_custom_dataset_catches_a_wrong_map_fn(check_config, tmp_path):
    text = check_config.read_text(encoding="utf-8")
    text = text.replace("dataset_map_fn=None", "dataset_map_fn=openai_map_fn").replace(
        "import template_map_fn_factory", "import openai_map_fn, template_map_fn_factory")
    wrong = tmp_path / "wrong_map_fn.py"
    wrong.write_text(text, encoding="utf-8")
    with pytest.raises(cli.XtunerError, match="set `dataset_map_fn` to None"):
        validation.check_custom_dataset(wrong)


def test_count_tokens_matches_encoding_each_text(tokenizer):
    texts = ["<|im_start|>user\n你好<|im_end|>\n", "résumé interview 面试", "", "\\frac{1}{2}"]
    assert validation._count_tokens(tokenizer, texts) == [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]


def test_count_tokens_ignores_the_padding_left_by_a_batched_call(tokenizer):
    texts = ["a", "hello there world, a longer text"]
    expected = validation._count_tokens(tokenizer, texts)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer(["x", "a much longer prompt for the batch"], padding=True)  # as generate_answers calls it
    assert validation._count_tokens(tokenizer, texts) == expected


# --- preference pairs (10_preference) -------------------------------------------------------------

def _pairs_file(tmp_path, records, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_clean_preference_pairs_pass_with_xtuners_token_counts(tmp_path, tokenizer):
    from xtuner.dataset.preference_dataset import tokenize

    pairs = data.load_preference_general() + [formats.preference_record("你是谁？", "我是小智。", "我是 AI。", system="简短回答")]
    report = validation.validate(_pairs_file(tmp_path, pairs), tokenizer=tokenizer, max_length=24, kind="preference")
    assert report.problems == [] and report.fmt == "preference" and report.map_fn is None
    tokenizer.chat_template = formats.CHATML  # what the course's configs give the tokenizer
    xtuner = [tokenize(p, tokenizer, max_length=10_000) for p in pairs]
    assert report.token_counts == [max(len(x["chosen_ids"]), len(x["rejected_ids"])) for x in xtuner]
    assert report.lengths["truncated"] == sum(n > 24 for n in report.token_counts) > 0 and not report.ok


def test_preference_problems_are_listed_by_line_with_the_fix(tmp_path):
    good = formats.preference_record("你是谁？", "我是小智。", "我是 AI。")
    records = [good,
               {"prompt": "你是谁？", "chosen": "我是小智。", "rejected": "我是 AI。"},  # strings, not message lists
               {"prompt": good["prompt"], "chosen": good["chosen"]},  # no rejected
               formats.preference_record("你好", "你好！", " 你好！"),  # the same answer twice
               {**good, "prompt": [{"role": "assistant", "content": "你好"}]},  # the prompt does not end with the user
               {**good, "chosen": [{"role": "assistant", "content": "  "}]},  # an empty answer
               good]  # a duplicate
    report = validation.validate(_pairs_file(tmp_path, records), kind="preference")
    by_line = {}
    for p in report.problems:
        by_line.setdefault(p.where, []).append(p)
    assert sorted(by_line) == [f"line {n}" for n in range(2, 8)]
    assert {p.problem.split(":")[0] for p in by_line["line 2"]} == {"prompt", "chosen", "rejected"}
    assert "list" in by_line["line 2"][0].problem and "formats.preference_record" in by_line["line 2"][0].fix
    assert by_line["line 3"][0].problem.startswith("rejected: Field required")
    assert "the same answer" in by_line["line 4"][0].problem and "worse rejected" in by_line["line 4"][0].fix
    assert "must end with a 'user' message" in by_line["line 5"][0].problem
    assert "'content' is empty" in by_line["line 6"][0].problem
    assert "duplicate of line 1" in by_line["line 7"][0].problem and not by_line["line 7"][0].blocking
    with pytest.raises(formats.DataFormatError, match=r"pairs.jsonl, line 2: prompt"):
        validation.validate(tmp_path / "pairs.jsonl", kind="preference", strict=True)


def test_chat_data_is_not_taken_for_preference_pairs(tmp_path):
    path = formats.write_jsonl(data.build_self_cognition("小智", "书生学员", 2), tmp_path / "sft.jsonl")
    with pytest.raises(formats.DataFormatError, match=r"sft.jsonl, line 1: this holds chat data in the 'conversation'"):
        validation.validate(path, kind="preference")
    with pytest.raises(ValueError, match=r"Unknown record kind 'pairs'; choose one of \('chat', 'pretrain', 'preference'\)"):
        validation.validate(path, kind="pairs")
