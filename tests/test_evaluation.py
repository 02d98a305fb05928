"""helpers.evaluation: ROUGE-L on Chinese, the C-Eval CSV reader, option log-probabilities, the probe, OpenCompass."""

import ast
import json
import shlex
from collections import Counter
from pathlib import Path

import pytest

from helpers import evaluation, files, formats
from helpers.evaluation import BenchmarkFormatError

REPO = Path(__file__).resolve().parent.parent
HEADER = "id,question,A,B,C,D,answer\n"


# --- ROUGE-L ----------------------------------------------------------------------------------

def test_rouge_l_scores_a_chinese_pair_by_character():
    prediction, reference = "北京是中国的首都", "中国的首都是北京"
    # 8 characters each; the longest common subsequence is 中国的首都 (5):
    # precision = 5/8, recall = 5/8, F = 2PR / (P + R) = 5/8 = 0.625.
    assert evaluation.rouge_l(prediction, reference) == pytest.approx(0.625)
    # A prefix: LCS 我爱北京 = 4, P = 4/4, R = 4/7, F = 2 * (4/7) / (1 + 4/7) = 8/11.
    assert evaluation.rouge_l("我爱北京", "我爱北京天安门") == pytest.approx(8 / 11)
    assert evaluation.rouge_l(prediction, ["完全无关的话", reference]) == pytest.approx(0.625)  # best reference


def test_rouge_scores_default_tokenizer_drops_chinese():
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"])  # keeps only [a-z0-9]: the trap
    assert default.score("中国的首都是北京", "北京是中国的首都")["rougeL"].fmeasure == 0.0
    assert default.score("中国的首都是北京", "中国的首都是北京")["rougeL"].fmeasure == 0.0  # even identical text
    assert evaluation.rouge_l("中国的首都是北京", "中国的首都是北京") == 1.0


def test_cjk_tokenizer_splits_characters_and_keeps_words():
    assert evaluation.CJKTokenizer().tokenize("SmolLM2 是一个 Chat 模型!") == ["smollm2", "是", "一", "个", "chat", "模", "型"]
    assert evaluation.rouge_l("The capital is Paris", "the CAPITAL is paris.") == 1.0


def test_score_answer():
    scores = evaluation.score_answer(" 巴黎。\n", ["巴黎。", "Paris"], ["巴黎"])
    assert scores == {"exact": True, "contains": True, "rouge_l": 1.0}
    scores = evaluation.score_answer("The capital is PARIS.", ["巴黎。"], ["paris", "capital"])
    assert scores["exact"] is False and scores["contains"] is True and scores["rouge_l"] == 0.0
    assert evaluation.score_answer("Paris", ["Paris"], ["Lyon"])["contains"] is False


# --- the C-Eval CSV reader ------------------------------------------------------------------------

def test_shipped_sample_loads_balanced():
    questions = evaluation.load_benchmark(evaluation.CEVAL_SAMPLE_DIR)
    subjects = Counter(q.subject for q in questions)
    assert set(subjects) == {"computer_network", "high_school_geography", "middle_school_mathematics"}
    assert all(8 <= n <= 10 for n in subjects.values())
    assert set(subjects) <= set(evaluation.CEVAL_SUBJECTS_ZH)
    letters = Counter(q.answer for q in questions)
    assert set(letters) == set("ABCD") and max(letters.values()) - min(letters.values()) <= 2
    assert questions[0].source == "computer_network_val.csv:2" and questions[0].id == "0"
    for q in questions:
        assert list(q.options) == ["A", "B", "C", "D"] and len(set(q.options.values())) == 4, q.source


def test_bom_crlf_and_multiline_cells_keep_editor_line_numbers(tmp_path):
    path = tmp_path / "logic_val.csv"
    text = (HEADER + '0,"第一行\n第二行，有逗号",甲,乙,丙,丁,A\n'
            '1,"他说""是""",甲,乙,丙,丁,b\n').replace("\n", "\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    first, second = evaluation._read_ceval_csv(path)
    assert first.subject == "logic" and first.question == "第一行\r\n第二行，有逗号"
    assert (first.source, second.source) == ("logic_val.csv:2", "logic_val.csv:4")  # row 1 spans lines 2-3
    assert second.question == '他说"是"' and second.answer == "B"
    path.write_bytes(path.read_bytes() + "2,q,a,b,c,d,X\r\n".encode())
    with pytest.raises(BenchmarkFormatError, match=r"line 5: answer 'X'"):
        evaluation._read_ceval_csv(path)


def test_dev_file_with_explanation_loads(tmp_path):
    path = tmp_path / "computer_network_dev.csv"
    path.write_text("id,question,A,B,C,D,answer,explanation\n0,1+1=____,1,2,3,4,B,1 加 1 等于 2。\n", encoding="utf-8")
    [q] = evaluation._read_ceval_csv(path)
    assert (q.subject, q.answer, q.options["B"]) == ("computer_network", "B", "2")
    assert evaluation._read_ceval_csv(path, subject="my_subject")[0].subject == "my_subject"


BAD_CSVS = [
    ("x_val.csv", "id,question,A,B,C,D\n0,q,a,b,c,d\n", r"missing column\(s\) answer"),
    ("x_val.csv", "id,question,A,B,C,answer\n0,q,a,b,c,A\n", r"missing column\(s\) D"),
    ("x_val.csv", HEADER + "0,q,a,b,c,d,A\n1,q,a,b,c,d,E\n", r"line 3: answer 'E' is not one of A, B, C, D"),
    ("x_val.csv", HEADER + "0,q,a,b,c,d,\n", r"line 2: answer '' is not one of"),
    ("x_val.csv", HEADER + "0,q,a,,c,d,A\n", r"line 2: the 'B' cell is empty"),
    ("x_val.csv", HEADER + "\n0,  ,a,b,c,d,A\n", r"line 3: the 'question' cell is empty"),
    ("x_val.csv", HEADER + "0,q,a,b,c,d,A\n1,q,1,000,b,c,d,A\n", r"line 3: 8 cells, but the header has 7.*double quotes"),
    ("x_test.csv", "id,question,A,B,C,D\n0,q,a,b,c,d\n", r"test split has no answers.*x_val\.csv"),
    ("x_test.csv", HEADER + "0,q,a,b,c,d,\n", r"test split has no answers"),
    ("x_val.csv", "", r"is empty"),
    ("x_val.csv", HEADER, r"has a header but no questions"),
    ("x_val.csv", HEADER + '0,"q,a,b,c,d,A\n1,q,a,b,c,d,A\n', r"line 2: not valid CSV \(unexpected end of data\)"),
]


@pytest.mark.parametrize("name, text, message", BAD_CSVS, ids=[m.split(":")[0][:30] for _, _, m in BAD_CSVS])
def test_bad_csvs_name_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=message) as err:
        evaluation._read_ceval_csv(path)
    assert str(path) in str(err.value)


def test_gbk_and_missing_files_are_explained(tmp_path):
    path = tmp_path / "x_val.csv"
    path.write_bytes(HEADER.encode() + "0,问题,甲,乙,丙,丁,A\n".encode("gbk"))
    with pytest.raises(BenchmarkFormatError, match=r"x_val\.csv, line 2: not UTF-8.*iconv"):
        evaluation._read_ceval_csv(path)
    with pytest.raises(BenchmarkFormatError, match="does not exist"):
        evaluation.load_benchmark(tmp_path / "nowhere_val.csv")


def test_load_benchmark_folders(tmp_path):
    with pytest.raises(BenchmarkFormatError, match=r"holds no \.csv files"):
        evaluation.load_benchmark(tmp_path)
    (tmp_path / "b_val.csv").write_text(HEADER + "0,q,a,b,c,d,A\n", encoding="utf-8")
    (tmp_path / "a_val.csv").write_text(HEADER + "0,q,a,b,c,d,B\n1,q,a,b,c,d,C\n", encoding="utf-8")
    assert [q.subject for q in evaluation.load_benchmark(tmp_path)] == ["a", "a", "b"]  # sorted by file name
    (tmp_path / "a_dev.csv").write_text(HEADER + "0,q,a,b,c,d,A\n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match="more than one file for a"):
        evaluation.load_benchmark(tmp_path)


def test_mc_prompt_is_ceval_zero_shot():
    q = evaluation.MCQuestion("computer_network", "0", "OSI 模型共有____层。", dict(zip("ABCD", "4578")), "C", "x:2")
    assert evaluation.mc_prompt(q) == ("以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n"
                                       "OSI 模型共有____层。\nA. 4\nB. 5\nC. 7\nD. 8\n答案：")
    q.subject = "my_own_subject"
    assert evaluation.mc_prompt(q).startswith("以下是中国关于my own subject考试")


# --- option log-probabilities on the tiny model -----------------------------------------------------

PROMPTS = ["Hi", "1+1=", "以下是中国关于计算机网络考试的单项选择题。\n答案：",
           "A much longer English prompt, about the capital of France, to make the padding wide:"]


def hand_logprob(chat_model, prompt: str, option: str) -> float:
    """One unbatched forward pass over prompt + option; sum log_softmax at the positions that predict the option."""
    import torch

    tok = chat_model.tokenizer
    p, o = tok(prompt, add_special_tokens=False)["input_ids"], tok(option, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = chat_model.model(torch.tensor([p + o])).logits[0]
    return sum(torch.log_softmax(logits[len(p) - 1 + k], dim=-1)[t].item() for k, t in enumerate(o))


@pytest.fixture(scope="module")
def tiny_chat(tiny_model):
    from helpers import chat

    return chat.load_chat_model(tiny_model)


def test_option_logprobs_match_a_hand_computation(tiny_chat):
    options = ("A", "B", "C", "D", "甲乙")
    assert len(tiny_chat.tokenizer("甲乙", add_special_tokens=False)["input_ids"]) > 1  # a multi-token option is summed
    lengths = {len(tiny_chat.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS}
    assert len(lengths) == len(PROMPTS)  # every batch mixes lengths, so padding mistakes show
    got = evaluation.option_logprobs(tiny_chat, PROMPTS, options, batch_size=3)
    for prompt, row in zip(PROMPTS, got):
        assert list(row) == list(options)
        for option in options:
            assert row[option] == pytest.approx(hand_logprob(tiny_chat, prompt, option), abs=1e-4), (prompt, option)
    assert len({round(v, 3) for v in got[0].values()}) == len(options)  # the options really differ


def test_option_logprobs_with_the_chat_template(tiny_chat):
    from helpers import chat

    got = evaluation.option_logprobs(tiny_chat, PROMPTS[:3], template_name="qwen_chat", batch_size=2)
    for prompt, row in zip(PROMPTS, got):
        wrapped = chat.build_prompt("qwen_chat", prompt)
        assert row["B"] == pytest.approx(hand_logprob(tiny_chat, wrapped, "B"), abs=1e-4)
    single = evaluation.option_logprobs(tiny_chat, PROMPTS[:3], template_name="qwen_chat", batch_size=1)
    for row, alone in zip(got, single):
        assert row == pytest.approx(alone, abs=1e-4)


def test_option_logprobs_through_a_lora_adapter(tiny_chat):
    import peft

    from helpers import chat

    before = hand_logprob(tiny_chat, PROMPTS[0], "C")
    lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # random B: outputs change
    adapted = chat.ChatModel(peft.get_peft_model(tiny_chat.model, lora).eval(), tiny_chat.tokenizer, tiny_chat.path)
    try:
        got = evaluation.option_logprobs(adapted, PROMPTS, batch_size=4)
        for prompt, row in zip(PROMPTS, got):
            assert row["C"] == pytest.approx(hand_logprob(adapted, prompt, "C"), abs=1e-4)
        assert abs(got[0]["C"] - before) > 1e-3  # the adapter is really in the forward pass
    finally:
        adapted.model.unload()  # give the shared fixture its plain model back
    assert hand_logprob(tiny_chat, PROMPTS[0], "C") == pytest.approx(before, abs=1e-5)


def test_continuation_logprobs_match_a_hand_computation(tiny_chat):
    continuations = ["A", "甲乙丙", "Paris, of course.", "B"]
    got = evaluation._continuation_logprobs(tiny_chat, PROMPTS, continuations, batch_size=3)  # right-padded batches
    for prompt, continuation, (logprob, tokens) in zip(PROMPTS, continuations, got):
        assert tokens == len(tiny_chat.tokenizer(continuation, add_special_tokens=False)["input_ids"])
        assert logprob == pytest.approx(hand_logprob(tiny_chat, prompt, continuation), abs=1e-4), continuation
    alone = evaluation._continuation_logprobs(tiny_chat, PROMPTS[1:2], continuations[1:2])
    assert alone[0][0] == pytest.approx(got[1][0], abs=1e-4)


def test_perplexity_scores_every_token_from_the_end_of_text_token(tiny_chat):
    import math

    texts = ["青石镇位于江南水乡。", "The old street is paved with stone."]
    eos = tiny_chat.tokenizer.eos_token
    logprob = sum(hand_logprob(tiny_chat, eos, text) for text in texts)
    tokens = sum(len(tiny_chat.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert evaluation.perplexity(tiny_chat, texts, batch_size=1) == pytest.approx(math.exp(-logprob / tokens), rel=1e-4)
    with pytest.raises(ValueError, match="no tokens"):
        evaluation._continuation_logprobs(tiny_chat, ["Hi"], [""])


def test_score_benchmark_on_the_sample(tiny_chat):
    questions = evaluation.load_benchmark(evaluation.CEVAL_SAMPLE_DIR)
    results = evaluation.score_benchmark(tiny_chat, questions, batch_size=16)
    assert len(results) == len(questions)
    for q, r in zip(questions, results):
        assert (r["subject"], r["id"], r["answer"]) == (q.subject, q.id, q.answer)
        assert r["predicted"] == max(r["logprobs"], key=r["logprobs"].get)
        assert r["correct"] == (r["predicted"] == q.answer) and all(v < 0 for v in r["logprobs"].values())
    table = evaluation.accuracy_table({"tiny": results})
    assert table.loc["overall", "questions"] == len(questions)
    assert table.loc["overall", "tiny"] == pytest.approx(sum(r["correct"] for r in results) / len(results))


def test_accuracy_table_numbers():
    def result(subject, i, correct):
        return {"subject": subject, "id": str(i), "answer": "A", "predicted": "A" if correct else "B",
                "correct": correct, "logprobs": dict.fromkeys("ABCD", -1.0)}

    base = [result("math", 0, True), result("math", 1, False), result("geo", 0, True), result("geo", 1, True)]
    tuned = [result("math", 0, False), result("math", 1, False), result("geo", 0, True), result("geo", 1, False)]
    table = evaluation.accuracy_table({"base": base, "tuned": tuned})
    assert list(table.index) == ["math", "geo", "overall"]
    assert list(table.columns) == ["base", "tuned", "questions", "chance"]
    assert table["base"].tolist() == [0.5, 1.0, 0.75] and table["tuned"].tolist() == [0.0, 0.5, 0.25]
    assert table["questions"].tolist() == [2, 2, 4] and table["chance"].tolist() == [0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="'tuned' was scored on other questions"):
        evaluation.accuracy_table({"base": base, "tuned": tuned[:3]})


# --- the general-knowledge probe ------------------------------------------------------------------

def test_probe_is_new_bilingual_and_checkable():
    items = evaluation.load_probe()
    assert 16 <= len(items) <= 24
    assert {item["lang"] for item in items} == {"en", "zh"}
    used = set(json.loads((REPO / "datasets" / "general_prompts.json").read_text(encoding="utf-8"))["prompts"])
    used |= {q["question"] for q in json.loads((REPO / "datasets" / "eval_questions.json").read_text(encoding="utf-8"))["questions"]}
    assert not {item["question"] for item in items} & used
    for item in items:
        assert not evaluation._judge_probe(item, item["question"]), f"an echo of the question passes: {item}"
        assert evaluation._judge_probe(item, item["answer"]), item  # the shipped reference answer passes


def test_judge_probe():
    item = {"lang": "en", "question": "What is the capital of Germany?", "expect": "Berlin"}
    assert evaluation._judge_probe(item, "The capital of Germany is berlin.")
    assert not evaluation._judge_probe(item, "The capital of Germany is Munich.")


@pytest.mark.parametrize("item, message", [
    ({"lang": "fr", "question": "q", "expect": "x"}, r"question 1: each question needs \"lang\""),
    ({"lang": "en", "question": " ", "expect": "x"}, r"question 1: \"question\" is missing or empty"),
    ({"lang": "zh", "question": "q", "expect": "(unclosed"}, r"question 1: \"expect\" is not a valid regular expression"),
])
def test_bad_probe_files(tmp_path, item, message):
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"questions": [item]}), encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=message):
        evaluation.load_probe(path)


# --- OpenCompass ------------------------------------------------------------------------------------

def test_opencompass_command(tmp_path):
    model = tmp_path / "my models" / "smollm2-merged"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    command = evaluation.opencompass_command(model, tmp_path / "oc", max_out_len=256, batch_size=4)
    args = shlex.split(command)  # the path with a space survives the shell
    assert args[0] == "opencompass" and args[args.index("--hf-path") + 1] == str(model)
    assert args[args.index("--datasets") + 1: args.index("--datasets") + 3] == ["ceval_gen", "gsm8k_gen"]
    assert args[args.index("--hf-type") + 1] == "chat" and args[args.index("--hf-num-gpus") + 1] == "1"
    assert args[args.index("--max-out-len") + 1] == "256" and args[args.index("--batch-size") + 1] == "4"
    assert args[args.index("--work-dir") + 1] == str(tmp_path / "oc")
    assert "--num-gpus" not in args and "trust_remote_code=True" not in args  # OpenCompass refuses --num-gpus
    internlm = evaluation.opencompass_command("/root/share/new_models/internlm2-chat-1_8b", "out", datasets=("ceval_gen",))
    assert "--model-kwargs trust_remote_code=True --tokenizer-kwargs trust_remote_code=True" in internlm
    assert "gsm8k_gen" not in internlm


def config_model(text: str) -> dict:
    """The keyword arguments of the ``models = [dict(...)]`` entry, evaluated as literals where they are."""
    tree = ast.parse(text)
    assign = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "models")
    call = assign.value.elts[0]
    return {k.arg: ast.literal_eval(k.value) if not isinstance(k.value, (ast.Name, ast.Call)) else ast.unparse(k.value)
            for k in call.keywords}


def test_write_opencompass_config(tmp_path):
    model, path = tmp_path / "merged", tmp_path / "eval_merged.py"
    written = evaluation.write_opencompass_config(model, path, batch_size=4)
    text = written.read_text(encoding="utf-8")
    assert "from opencompass.configs.datasets.ceval.ceval_gen import ceval_datasets" in text
    assert "from opencompass.configs.datasets.gsm8k.gsm8k_gen import gsm8k_datasets" in text
    assert "datasets = [*ceval_datasets, *gsm8k_datasets]" in text
    kwargs = config_model(text)
    assert kwargs["type"] == "HuggingFacewithChatTemplate" and kwargs["path"] == str(model)
    assert kwargs["abbr"] == "merged-hf" and kwargs["batch_size"] == 4 and kwargs["run_cfg"] == "dict(num_gpus=1)"
    assert "model_kwargs" not in kwargs
    with pytest.raises(files.OutputExistsError):
        evaluation.write_opencompass_config(tmp_path / "other", path)
    assert path.read_text(encoding="utf-8") == text  # untouched
    evaluation.write_opencompass_config("/share/internlm2-chat-7b", path, datasets=("ceval_gen",), overwrite=True)
    kwargs = config_model(path.read_text(encoding="utf-8"))
    assert kwargs["model_kwargs"] == "dict(trust_remote_code=True)" and kwargs["path"] == "/share/internlm2-chat-7b"
    with pytest.raises(ValueError, match="one config per dataset family"):
        evaluation.write_opencompass_config(model, tmp_path / "x.py", datasets=("ceval_gen", "ceval_ppl"))


# --- comparing models and the report -------------------------------------------------------------

def test_answers_scores_probe_and_report_round_trip(tiny_chat, tmp_path):
    """Rows per (model, question) hold the model's own greedy answer; the report's JSON keeps the scores."""
    from helpers import chat

    items = [{"question": "你是谁？", "references": ["我是小智。"], "keywords": ["小智"]},
             {"question": "Who are you?", "references": ["I am 小智."], "keywords": ["小智"]}]
    compared = {"base": tiny_chat, "again": tiny_chat}
    table = evaluation.answer_and_score(compared, items, "qwen_chat", max_new_tokens=8)
    direct = chat.generate_answers(tiny_chat, [it["question"] for it in items], "qwen_chat", max_new_tokens=8)
    assert list(table.model) == ["base", "base", "again", "again"] and list(table.answer) == direct * 2
    scores = evaluation.mean_scores(table)
    assert list(scores.index) == ["base", "again"] and scores.loc["base"].equals(scores.loc["again"])
    probe = [{"lang": "en", "question": "Name a colour.", "expect": direct[0][:3] or "x"}]
    probe_table = evaluation.answer_probe({"base": tiny_chat}, probe, "qwen_chat", max_new_tokens=8)
    probe_scores = probe_table.groupby("model")["correct"].mean()
    four = {letter: -1.0 for letter in "ABCD"}
    accuracy = evaluation.accuracy_table({"base": [{"subject": "s", "id": "1", "correct": True, "logprobs": four},
                                                   {"subject": "s", "id": "2", "correct": False, "logprobs": four}]})
    chart = evaluation.plot_comparison(probe_scores, scores["contains"], tmp_path / "evaluation.png")
    summary = evaluation.write_report(tmp_path, scores, accuracy, probe_scores, {"heldout": table}, chart, "test set")
    saved = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    assert saved["heldout"] == summary["heldout"] and saved["benchmark"]["overall"]["base"] == 0.5
    assert len(saved["details"]["heldout"]) == 4 and chart.stat().st_size > 10_000
    assert "| again |" in (tmp_path / "evaluation.md").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        evaluation.answer_and_score(compared, [], "qwen_chat")


def test_preference_scores_use_xtuners_chat_template_and_labels(tiny_chat):
    from xtuner.dataset.preference_dataset import tokenize

    pairs = [formats.preference_record("你是谁？", "我是小智。", "我是一个 AI 语言模型，没有名字。"),
             formats.preference_record("Hi", "Hello!", "Go away.", system="Be kind.")]
    scores = evaluation.preference_scores(tiny_chat, pairs, batch_size=1)
    tok = tiny_chat.tokenizer
    for pair, score in zip(pairs, scores):
        prompt = tok.apply_chat_template(pair["prompt"], tokenize=False, add_generation_prompt=True, chat_template=formats.CHATML)
        for side in ("chosen", "rejected"):
            answer = pair[side][0]["content"] + "<|im_end|>\n"  # what XTuner's labels cover
            assert score[f"{side}_logp"] == pytest.approx(hand_logprob(tiny_chat, prompt, answer), abs=1e-4)
        tok.chat_template = formats.CHATML
        xtuner = tokenize(pair, tok, max_length=512)
        assert score["chosen_tokens"] == sum(label != -100 for label in xtuner["chosen_labels"])
        assert score["rejected_tokens"] == sum(label != -100 for label in xtuner["rejected_labels"])


def test_preference_accuracy_per_token_sum_and_implicit_reward():
    row = lambda c, nc, r, nr: {"chosen_logp": c, "chosen_tokens": nc, "rejected_logp": r, "rejected_tokens": nr}
    base = [row(-10, 5, -4, 2), row(-6, 3, -9, 3)]  # per token: -2 vs -2 (a tie is not a win), -2 vs -3
    tuned = [row(-8, 5, -6, 2), row(-5, 3, -12, 3)]  # per token: -1.6 vs -3, -1.67 vs -4
    assert evaluation.preference_accuracy(base) == {"accuracy": 0.5, "sum_accuracy": 0.5, "mean_margin_per_token": 0.5}
    got = evaluation.preference_accuracy(tuned, reference=base)
    assert got["accuracy"] == 1.0 and got["sum_accuracy"] == 0.5 and got["implicit_reward_accuracy"] == 1.0
    assert got["mean_margin_per_token"] == pytest.approx(((-1.6 + 3) + (-5 / 3 + 4)) / 2)
    with pytest.raises(ValueError):
        evaluation.preference_accuracy(tuned, reference=base[:1])
