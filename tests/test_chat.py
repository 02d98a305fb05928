import pytest

from helpers import chat, data
from test_cli_convert import assert_printed_is_what_ran, xtuner_runs  # noqa: F401


def test_prompt_matches_xtuner_templates():
    assert chat.build_prompt("qwen_chat", "你是谁？") == "<|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n"
    assert chat.build_prompt("qwen_chat", "Q", system="S") == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
    assert chat.build_prompt("internlm2_chat", "Q") == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    assert "<|im_end|>" in chat._stop_words("internlm2_chat")


def test_cut_at_stop():
    assert chat._cut_at_stop(" Paris.<|im_end|>\nmore", ["<|im_end|>", "<|endoftext|>"]) == "Paris."


def test_eval_questions_and_judging():
    items = data.load_eval_questions()
    kinds = [q["kind"] for q in items]
    assert kinds.count("identity") >= 2 and kinds.count("general") >= 1
    france = next(q for q in items if "France" in q["question"])
    assert chat.judge_answer(france, "The capital of France is paris.", "小智")
    assert not chat.judge_answer(france, "I am 小智.", "小智")
    assert chat.judge_answer(items[0], "我是小智。", "小智") and not chat.judge_answer(items[0], "我是助手。", "小智")


def test_paraphrase_is_not_in_training_templates():
    from helpers import data

    trained = {q for qs in data.load_self_cognition_templates()["questions"].values() for q in qs}
    paraphrases = [q["question"] for q in data.load_eval_questions() if "paraphrase" in q.get("note", "")]
    assert paraphrases and not set(paraphrases) & trained


def test_greedy_generation_is_deterministic_and_batch_independent(tiny_model):
    model = chat.load_chat_model(tiny_model)
    questions = ["你是谁？", "What is the capital of France?", "Hi"]
    batched = chat.generate_answers(model, questions, "qwen_chat", max_new_tokens=8)
    single = [chat.generate_answers(model, [q], "qwen_chat", max_new_tokens=8)[0] for q in questions]
    assert batched == single and all(isinstance(a, str) for a in batched)


def test_multiline_questions_are_refused_by_xtuner_chat(tiny_model):
    with pytest.raises(ValueError, match="one-line questions"):
        chat.xtuner_chat(tiny_model, "qwen_chat", ["line one\n\nline two"])


def test_xtuner_chat_with_an_adapter_prints_what_it_runs(tiny_model, tmp_path, capsys, xtuner_runs):
    """A real xtuner chat on the tiny model and a LoRA adapter: the printed line is what ran (base model, --adapter,
    PYTHONWARNINGS, questions piped in unchanged: quotes, %, a backslash, Chinese) and every question got its answer."""
    import peft
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "hf_adapter"
    lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), lora).save_pretrained(adapter)
    questions = ["你是谁？", "It's 100% \\ \"fine\"?"]
    replies = chat.xtuner_chat(tiny_model, "qwen_chat", questions, max_new_tokens=8, adapter=adapter)
    assert len(replies) == len(questions)
    assert_printed_is_what_ran(capsys.readouterr().out, xtuner_runs)
    [(run, env, piped)] = xtuner_runs
    assert run.command[1:5] == ["chat", str(tiny_model), "--adapter", str(adapter)] and "--system" not in run.command
    assert env == {"PYTHONWARNINGS": "ignore"} and piped == "你是谁？\n\nIt's 100% \\ \"fine\"?\n\nEXIT\n\n"


SAVED = [{"kind": "identity", "question": "你是谁？", "before": "我是助手。"},
         {"kind": "general", "question": "Removed since?", "before": "old"},
         {"kind": "general", "question": "What is the capital of France?", "before": "Paris."}]


def test_before_answers_join_on_the_question_and_answer_only_new_ones():
    """Questions added to eval_questions.json after notebook 00 (06 exercise 2) are answered now, once each."""
    asked = []

    def answer_new(qs):
        asked.append(list(qs))
        return [f"base: {q}" for q in qs]

    questions = ["What is the capital of France?", "你叫什么名字？", "你是谁？", "你叫什么名字？"]
    answers, new = chat.before_answers(questions, SAVED, answer_new)
    assert answers == ["Paris.", "base: 你叫什么名字？", "我是助手。", "base: 你叫什么名字？"]
    assert new == ["你叫什么名字？"] and asked == [["你叫什么名字？"]]


def test_before_answers_with_nothing_new_asks_nobody():
    def answer_new(qs):
        raise AssertionError("nothing to answer")

    assert chat.before_answers(["你是谁？"], SAVED, answer_new) == (["我是助手。"], [])
