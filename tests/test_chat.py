import pytest

from helpers import chat, data


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
