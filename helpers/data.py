"""Training data for the course: the shipped questions and prompts, and the self-cognition set built from them.

Reading, checking, converting and writing files live in ``formats`` and ``validation``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from .formats import conversation_record, preference_record, read_jsonl
from .workspace import DATASETS_DIR


def load_self_cognition_templates(path: Path = DATASETS_DIR / "self_cognition.json") -> dict:
    """Questions and answer templates (zh and en) for the self-cognition set (01_self_cognition_data)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def build_self_cognition(name: str, author: str, n: int, seed: int = 0, system: str = "",
                         templates: dict | None = None) -> list[dict]:
    """``n`` varied identity conversations: questions × answer templates, same language, seeded (01_self_cognition_data)."""
    templates = templates or load_self_cognition_templates()
    pairs = [(q, a) for lang, qs in templates["questions"].items() for q in qs for a in templates["answers"][lang]]
    random.Random(seed).shuffle(pairs)
    chosen = pairs[:n]
    return [conversation_record(q, a.format(name=name, author=author), system) for q, a in chosen]


def heldout_identity(name: str, author: str, templates: dict | None = None) -> list[dict]:
    """The held-out identity paraphrases, each with every answer template of its language as references (01_self_cognition_data)."""
    templates = templates or load_self_cognition_templates()
    return [{"question": q, "lang": lang, "keywords": [name],
             "references": [a.format(name=name, author=author) for a in templates["answers"][lang]]}
            for lang, qs in templates["heldout_questions"].items() for q in qs]


def preference_questions(heldout: bool = False, templates: dict | None = None) -> list[str]:
    """01's identity questions (``heldout``: its held-out paraphrases), every language, for preference pairs (10_preference)."""
    templates = templates or load_self_cognition_templates()
    return [q for qs in templates["heldout_questions" if heldout else "questions"].values() for q in qs]


def identity_preference_pairs(name: str, author: str, heldout: bool = False, rejected: dict[str, str] | None = None,
                              templates: dict | None = None) -> list[dict]:
    """A preference pair per identity question: chosen = the course's identity answer, rejected = a general chat
    model's identity-less answer (``generic_answers``), or ``rejected[question]`` if given (e.g. the base model's own
    answers). Training pairs use every template but each language's last; the held-out pairs (01's paraphrases) use
    only the last ones, so neither their questions nor their answers are trained on (10_preference)."""
    templates = templates or load_self_cognition_templates()
    pairs = []
    for lang, questions in templates["heldout_questions" if heldout else "questions"].items():
        answers, generic = templates["answers"][lang], templates["generic_answers"][lang]
        for i, question in enumerate(questions):
            better = answers[-1] if heldout else answers[i % (len(answers) - 1)]
            worse = generic[-1] if heldout else generic[i % (len(generic) - 1)]
            worse = rejected[question] if rejected is not None else worse
            pairs.append(preference_record(question, better.format(name=name, author=author), worse))
    return pairs


def load_preference_general(path: Path = DATASETS_DIR / "preference_general.jsonl") -> list[dict]:
    """The shipped general preference pairs: a right and a wrong answer to everyday questions (10_preference)."""
    return read_jsonl(path)


def eval_items(records: list[dict], keywords: list[str] = ()) -> list[dict]:
    """Held-out conversation records as evaluation items: first question, its answer as the reference (07_evaluate)."""
    turns = [r["conversation"][0] for r in records]
    return [{"question": t["input"], "system": t.get("system", ""), "references": [t["output"]],
             "keywords": list(keywords)} for t in turns]


def load_general_prompts(path: Path = DATASETS_DIR / "general_prompts.json") -> list[str]:
    """The shipped general prompts that the base model answers for self-distillation (01_self_cognition_data)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["prompts"]


def load_eval_questions(path: Path = DATASETS_DIR / "eval_questions.json") -> list[dict]:
    """The before/after evaluation questions shipped in ``datasets/`` (00_environment_and_base_model)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["questions"]


def trim_to_sentence(text: str) -> str:
    """Cut a length-limited answer back to its last complete sentence, if it has one (01_self_cognition_data)."""
    ends = [m.end() for m in re.finditer(r"[.!?。！？](?=\s|$)|[。！？]", text)]
    return text[: ends[-1]].strip() if ends else text.strip()


def mix(*parts: list[dict], seed: int = 0) -> list[dict]:
    """All records of ``parts`` in one seeded shuffled list (01_self_cognition_data)."""
    records = [r for part in parts for r in part]
    random.Random(seed).shuffle(records)
    return records
