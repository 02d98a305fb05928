"""Talking to a model: prompts in the training template, greedy answers, side-by-side comparisons."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import cli
from .models import check_model_dir


@dataclass
class ChatModel:
    """A loaded model and tokenizer, ready for ``generate_answers``."""

    model: object
    tokenizer: object
    path: Path


def load_chat_model(path: Path, adapter: Path | None = None, trust_remote_code: bool = False,
                    device: str = "cpu") -> ChatModel:
    """Load a HF model folder (plus an optional LoRA adapter) for greedy generation (00_environment_and_base_model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_model_dir(Path(path))
    dtype = torch.float32 if device == "cpu" else torch.float16
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, trust_remote_code=trust_remote_code)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    return ChatModel(model.to(device).eval(), tokenizer, path)


def build_prompt(template_name: str, question: str, system: str = "",
                 history: list[tuple[str, str]] = ()) -> str:
    """The exact text xtuner trains on for a user turn after ``history`` (earlier question/answer pairs), from
    ``PROMPT_TEMPLATE``: each earlier answer ends with SUFFIX and SEP, as xtuner's encoder joins turns
    (00_environment_and_base_model)."""
    from xtuner.utils import PROMPT_TEMPLATE

    template = PROMPT_TEMPLATE[template_name]
    prompt = template.get("SYSTEM", "{system}").format(system=system) if system else ""
    after = template.get("SUFFIX", "") + template.get("SEP", "")
    for turn, (asked, answered) in enumerate(history, start=1):
        prompt += template["INSTRUCTION"].format(input=asked, round=turn) + answered + after
    return prompt + template["INSTRUCTION"].format(input=question, round=len(history) + 1)


def _stop_words(template_name: str) -> list[str]:
    """The strings that end an answer in this template."""
    from xtuner.utils import PROMPT_TEMPLATE

    return list(PROMPT_TEMPLATE[template_name].get("STOP_WORDS", []))


def generate_answers(chat: ChatModel, questions: list[str], template_name: str, system: str = "",
                     max_new_tokens: int = 64, batch_size: int = 64) -> list[str]:
    """Greedy answers to ``questions``, batched, cut at the template's stop words; ``template_name=None`` continues
    each text as it is, as a pre-trained model is used (00_environment_and_base_model).

    The course's question sets (at most 44) fit one batch: on cpu, 01's 44 prompts take 36 s instead of 53 s in
    batches of 16, with the same greedy answers (scripts/bench_course.py prints both)."""
    import torch

    tok, answers = chat.tokenizer, []
    stops = (_stop_words(template_name) if template_name else []) + [tok.eos_token]
    for start in range(0, len(questions), batch_size):
        prompts = [build_prompt(template_name, q, system) if template_name else q
                   for q in questions[start:start + batch_size]]
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(chat.model.device)
        with torch.no_grad():
            out = chat.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for row in out[:, batch["input_ids"].shape[1]:]:
            answers.append(_cut_at_stop(tok.decode(row, skip_special_tokens=False), stops))
    return answers


def stream_answer(chat: ChatModel, prompt: str, template_name: str, max_new_tokens: int = 64,
                  temperature: float = 0.0) -> Iterator[str]:
    """Yield the answer to ``prompt`` (a ``build_prompt`` text) piece by piece as the model writes it; greedy at
    temperature 0; ends at the template's stop words, which are not yielded; the web demo uses it (08_serve)."""
    from transformers import TextIteratorStreamer

    tok = chat.tokenizer
    stops = [s for s in _stop_words(template_name) + [tok.eos_token] if s]
    batch = tok(prompt, return_tensors="pt", add_special_tokens=False).to(chat.model.device)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=False)
    sampling = dict(do_sample=True, temperature=temperature) if temperature > 0 else dict(do_sample=False)
    worker = threading.Thread(target=lambda: chat.model.generate(
        **batch, max_new_tokens=max_new_tokens, streamer=streamer, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, stop_strings=stops, tokenizer=tok, **sampling))
    worker.start()  # generate() runs without gradients by itself
    text, sent = "", 0
    for piece in streamer:
        text += piece
        cut = min([text.find(s) for s in stops if s in text], default=-1)
        # hold back a tail that could still become a stop word
        safe = cut if cut >= 0 else max(0, len(text) - max(map(len, stops)))
        if safe > sent:
            yield text[sent:safe]
            sent = safe
        if cut >= 0:
            for _ in streamer:  # generation stops at the stop word too: read to its end so the thread ends
                pass
            break
    else:
        if len(text) > sent:
            yield text[sent:]
    worker.join()


def _cut_at_stop(text: str, stops: list[str]) -> str:
    """``text`` up to the first stop word, stripped."""
    for stop in filter(None, stops):
        text = text.split(stop, 1)[0]
    return text.strip()


def before_answers(questions: list[str], saved: list[dict], answer_new: Callable[[list[str]], list[str]]
                   ) -> tuple[list[str], list[str]]:
    """Each question's saved ``before`` answer, matched on the question text; the questions with none saved are
    answered by ``answer_new`` (the base model). Returns the answers and those new questions (06_chat_compare)."""
    known = {r["question"]: r["before"] for r in saved}
    new = [q for q in dict.fromkeys(questions) if q not in known]
    known.update(zip(new, answer_new(new) if new else []))
    return [known[q] for q in questions], new


def judge_answer(item: dict, answer: str, name: str) -> bool:
    """True when ``answer`` shows what ``item`` expects: the trained name, or the general keyword (06_chat_compare)."""
    if item["kind"] == "identity":
        return name in answer
    return re.search(item["expect"], answer, flags=re.IGNORECASE) is not None


XTUNER_PROMPT = ">>> "
# printed after an answer once prompt + answer reach --max-new-tokens tokens: xtuner forgets the earlier turns
HISTORY_DROPPED = re.compile(r"^Remove the memory of history responses.*$", re.M)


def xtuner_chat(model_dir: Path, template_name: str, questions: list[str], max_new_tokens: int = 64,
                system: str | None = None, torch_dtype: str = "fp32", adapter: Path | None = None) -> list[str]:
    """Ask ``xtuner chat MODEL [--adapter ADAPTER]`` the questions non-interactively (piped input, greedy) and return
    its answers; one conversation, so later answers see the earlier turns unless xtuner drops them (06_chat_compare)."""
    args = ["chat", str(model_dir), *(["--adapter", str(adapter)] if adapter else []), "--prompt-template",
            template_name, "--no-streamer", "--temperature", "0", "--max-new-tokens", str(max_new_tokens),
            "--torch-dtype", torch_dtype]
    if system:
        args += ["--system", system]
    if any("\n" in q for q in questions):
        raise ValueError("xtuner chat ends a question at an empty line; pass one-line questions.")
    run = cli.run_xtuner(*args, input_text="".join(f"{q}\n\n" for q in questions) + "EXIT\n\n",
                         env={"PYTHONWARNINGS": "ignore"})  # warnings would interleave with the answers
    parts = run.output.split(XTUNER_PROMPT)[1:len(questions) + 1]
    parts = [HISTORY_DROPPED.sub("", p.split("double enter to end input")[0]) for p in parts]
    answers = [_cut_at_stop(p, _stop_words(template_name)) for p in parts]
    cli.require(len(answers) == len(questions) and "Log: Exit!" in run.output, run, "an answer to every question")
    return answers
