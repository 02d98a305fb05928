"""Checking a data file before anything trains: every problem by line, the matching map_fn, token lengths against max_length.

``validate`` is the one validator: the full report, or (``strict=True``, ``validate_file``) the first problem raised.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from . import cli, formats
from .formats import DataFormatError


@dataclass
class Problem:
    """One thing wrong with one record: where (file and line/row), what, and how to fix it."""

    file: str
    where: str
    problem: str
    fix: str
    blocking: bool = True  # XTuner cannot train on the record as it is (strict mode raises it)


@dataclass
class Report:
    """Everything the learner should see before training on a file."""

    file: Path
    fmt: str
    map_fn: str | None
    records: int
    problems: list[Problem] = field(default_factory=list)
    lengths: dict | None = None
    token_counts: list[int] | None = None  # tokens per record, in file order

    @property
    def ok(self) -> bool:
        """No problems and nothing truncated."""
        return not self.problems and not (self.lengths and self.lengths["truncated"])

    def summary(self) -> dict:
        """The report's headline numbers (02_your_own_data)."""
        head = {"file": str(self.file), "format": self.fmt, "dataset_map_fn": self.map_fn, "records": self.records,
                "problems": len(self.problems)}
        return head | (self.lengths or {})

    def problem_table(self):
        """Problems as a DataFrame: file, where, problem, fix (02_your_own_data)."""
        import pandas as pd

        return pd.DataFrame([vars(p) for p in self.problems], columns=["file", "where", "problem", "fix"])


# --- per-record checks ----------------------------------------------------------------------------

def _role_problems(loaded: formats.Loaded) -> list[Problem]:
    """Role-order problems of OpenAI and ShareGPT records, all of them, by line."""
    problems = []
    if loaded.fmt not in ("openai", "sharegpt"):
        return problems
    for record, where in zip(loaded.records, loaded.where):
        messages = record.get(formats.FORMATS[loaded.fmt].key)
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            continue  # not a list of messages: conversion reports it
        if loaded.fmt == "openai":
            roles = [m.get("role") for m in messages]
        else:
            roles = [formats.SHAREGPT_ROLES.get(m.get("from"), m.get("from")) for m in messages]
        problems += [Problem(str(loaded.path), where, p, "order messages as [system], user, assistant, user, ...")
                     for p in formats.role_order_problems(roles)]
    return problems


def _conversion_problems(loaded: formats.Loaded) -> tuple[list[dict], list[str], list[Problem]]:
    """Convert every record to ``conversation``, collecting the ones that cannot be."""
    records, where, problems = [], [], []
    for record, place in zip(loaded.records, loaded.where):
        try:
            records.append(formats.to_conversation(record, loaded.fmt, place))
            where.append(place)
        except (DataFormatError, KeyError, TypeError, AttributeError) as exc:
            problems.append(Problem(str(loaded.path), place, str(exc).removeprefix(f"{place}: "), "fix or drop the record"))
    return records, where, problems


SCHEMA_FIXES = {  # one entry per record kind that validate(kind=...) checks
    "chat": "fill in the text or drop the record",
    "pretrain": "one turn per record, input \"\", the text as output (corpus.pretrain_record)",
    "preference": 'prompt: [{"role": "user", "content": ...}], chosen and rejected: [{"role": "assistant", '
                  '"content": ...}] (formats.preference_record)',
}


def _schema_problems(records: list[dict], where: list[str], path: Path, kind: str = "chat") -> list[Problem]:
    """Empty or missing fields and wrong types, by line, in one pydantic pass."""
    return [Problem(str(path), where[i], f"{name}: {message}", SCHEMA_FIXES[kind])
            for i, name, message in formats.schema_errors(records, kind)]


def _system_problems(records: list[dict], where: list[str], path: Path) -> list[Problem]:
    """A system prompt on a later turn, which XTuner would insert mid-conversation."""
    return [Problem(str(path), w, f"conversation.{i}.system is set on turn {i + 1}", "put the system prompt on turn 1 only",
                    blocking=False)
            for r, w in zip(records, where) for i, turn in enumerate(r.get("conversation", [])[1:], start=1)
            if isinstance(turn, dict) and turn.get("system")]


def _duplicate_problems(records: list[dict], where: list[str], path: Path) -> list[Problem]:
    """Records identical to an earlier one."""
    seen, problems = {}, []
    for record, place in zip(records, where):
        key = _record_key(record)
        if key in seen:
            problems.append(Problem(str(path), place, f"duplicate of {seen[key]}", "drop the repeated record", blocking=False))
        else:
            seen[key] = place
    return problems


def _record_key(record: dict):
    """A hashable key equal for identical records; cheap for plain ``conversation`` records."""
    turns = record.get("conversation")
    if type(turns) is list and all(type(t) is dict and t.keys() <= {"system", "input", "output"} for t in turns):
        return tuple((t.get("system", ""), t.get("input"), t.get("output")) for t in turns)
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


def check_records(loaded: formats.Loaded, pretrain: bool = False) -> tuple[list[dict], list[Problem]]:
    """All per-record problems of a loaded file, and its records converted to ``conversation``; ``pretrain`` checks
    XTuner's pre-training records (empty input) instead of question/answer ones (02_your_own_data)."""
    roles = _role_problems(loaded)
    records, where, problems = _conversion_problems(loaded)
    reported = {p.where for p in roles}  # a bad role order also stops conversion: report it once
    problems = roles + [p for p in problems if p.where not in reported]
    problems += _schema_problems(records, where, loaded.path, "pretrain" if pretrain else "chat")
    problems += _system_problems(records, where, loaded.path)
    problems += _duplicate_problems(records, where, loaded.path)
    order = {w: i for i, w in enumerate(loaded.where)}
    problems.sort(key=lambda p: order.get(p.where, -1))
    return records, problems


def _check_preference_records(loaded: formats.Loaded) -> tuple[list[dict], list[Problem]]:
    """All problems of preference pairs by line (fields, roles, chosen equal to rejected, duplicates), and the pairs
    whose fields are valid (used by validate)."""
    problems = _schema_problems(loaded.records, loaded.where, loaded.path, "preference")
    broken = {p.where for p in problems}
    valid = [(r, w) for r, w in zip(loaded.records, loaded.where) if w not in broken]
    problems += [Problem(str(loaded.path), w, "chosen and rejected are the same answer: the pair teaches nothing",
                         "write a worse rejected answer, or drop the pair")
                 for r, w in valid if r["chosen"][0]["content"].strip() == r["rejected"][0]["content"].strip()]
    problems += _duplicate_problems([r for r, _ in valid], [w for _, w in valid], loaded.path)
    order = {w: i for i, w in enumerate(loaded.where)}
    problems.sort(key=lambda p: order.get(p.where, -1))
    return [r for r, _ in valid], problems


# --- token lengths --------------------------------------------------------------------------------

def token_lengths(records: list[dict], tokenizer, template_name: str | None, batch_size: int = 4096) -> list[int]:
    """Tokens per record (``conversation`` or OpenAI) exactly as xtuner encodes it, before truncation (no template:
    as pre-training encodes it); one batched tokenizer pass (01_self_cognition_data)."""
    from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
    from xtuner.dataset.utils import get_bos_eos_token_ids
    from xtuner.utils import PROMPT_TEMPLATE

    apply_template = (template_map_fn_factory(template=PROMPT_TEMPLATE[template_name]) if template_name
                      else lambda record: record)  # pre-training: no template, the text as it is
    bos, eos = get_bos_eos_token_ids(tokenizer)
    texts, shape = [], []  # every piece encode_fn encodes separately; per record (pieces, special tokens)
    for record in records:
        if "conversation" not in record:
            record = openai_map_fn(copy.deepcopy(record))  # as xtuner maps OpenAI data (it edits records in place)
        turns = apply_template({"conversation": [dict(t) for t in record["conversation"]]})["conversation"]
        pieces, specials, needs_bos = 0, 0, True
        for turn in turns:
            specials += len(bos) if needs_bos else 0
            parts = [turn["input"], turn["output"]] + ([turn["sep"]] if turn.get("sep") else [])
            texts += parts
            pieces += len(parts)
            specials += len(eos) if turn.get("need_eos_token", True) else 0
            needs_bos = turn.get("need_eos_token", True)
        shape.append((pieces, specials))
    counts = []
    for start in range(0, len(texts), batch_size):
        counts += _count_tokens(tokenizer, texts[start:start + batch_size])
    lengths, position = [], 0
    for pieces, specials in shape:
        lengths.append(specials + sum(counts[position:position + pieces]))
        position += pieces
    return lengths


def _preference_lengths(records: list[dict], tokenizer) -> list[int]:
    """Tokens of the longer sample of each pair (prompt + chosen, prompt + rejected), as XTuner's preference dataset
    encodes them with the chat template, before it truncates each to ``max_length`` (used by validate)."""
    texts = [tokenizer.apply_chat_template(r["prompt"] + r[side], tokenize=False, chat_template=formats.CHATML)
             for r in records for side in ("chosen", "rejected")]
    counts = _count_tokens(tokenizer, texts)
    return [max(counts[i], counts[i + 1]) for i in range(0, len(counts), 2)]


def _count_tokens(tokenizer, texts: list[str]) -> list[int]:
    """Tokens in each text (no special tokens added), one batch call; fast tokenizers skip building id lists. (A fast
    tokenizer keeps the padding of its last padded call, e.g. batched generation: then the plain call, which resets it.)"""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None and backend.padding is None and backend.truncation is None:
        return [len(encoding) for encoding in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]]


def length_summary(lengths: list[int], max_length: int) -> dict:
    """Count, mean, max and how many samples ``max_length`` would truncate (01_self_cognition_data)."""
    over = sum(n > max_length for n in lengths)
    return {"samples": len(lengths), "mean_tokens": round(sum(lengths) / len(lengths), 1), "max_tokens": max(lengths),
            "max_length": max_length, "truncated": over, "truncated_share": round(over / len(lengths), 4)}


def plot_lengths(lengths: list[int], max_length: int, path: Path):
    """Histogram of tokens per sample with the ``max_length`` line, saved as PNG (01_self_cognition_data)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(lengths, bins=30)
    ax.axvline(max_length, color="red", linestyle="--", label=f"max_length={max_length}")
    ax.set_xlabel("tokens per sample")
    ax.set_ylabel("samples")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return fig


def too_long(lengths: list[int], max_length: int) -> list[int]:
    """Indices of the records that ``max_length`` would truncate (02_your_own_data)."""
    return [i for i, n in enumerate(lengths) if n > max_length]


# --- the report -----------------------------------------------------------------------------------

def validate(path: Path, dataset_map_fn: str | None = "auto", tokenizer=None, template_name: str | None = None,
             max_length: int | None = None, strict: bool = False, known: tuple[str, ...] = tuple(formats.FORMATS),
             kind: str = "chat") -> Report:
    """Load any supported file and report every problem, the matching map_fn and token lengths; ``strict`` raises the
    first problem instead; ``kind`` "pretrain" checks pre-training records, "preference" preference pairs
    (02_your_own_data)."""
    if kind not in SCHEMA_FIXES:
        raise ValueError(f"Unknown record kind {kind!r}; choose one of {tuple(SCHEMA_FIXES)}.")
    preference, pretrain = kind == "preference", kind == "pretrain"
    if preference:
        loaded = formats.load_preference(path)
        records, problems = _check_preference_records(loaded)
    else:
        loaded = formats.load_records(path, ("conversation",) if pretrain else known)
        records, problems = check_records(loaded, pretrain)
    blocking = [p for p in problems if p.blocking]
    if strict and blocking:
        first = blocking[0]
        raise DataFormatError(f"{first.file}, {first.where}: {first.problem} ({first.fix})")
    if dataset_map_fn != "auto" and not preference:
        check_map_fn(loaded.fmt, dataset_map_fn, loaded.path)
    map_fn = None if preference else formats.FORMATS[loaded.fmt].map_fn
    report = Report(loaded.path, loaded.fmt, map_fn, len(loaded.records), problems)
    if tokenizer is not None and records:
        report.token_counts = (_preference_lengths(records, tokenizer) if preference
                               else token_lengths(records, tokenizer, template_name))
        report.lengths = length_summary(report.token_counts, max_length)
    return report


def validate_file(path: Path, dataset_map_fn: str | None = "auto") -> str:
    """Strict check of a file in a format the course trains on: the first problem raised, else the format
    (01_self_cognition_data)."""
    return validate(path, dataset_map_fn, strict=True, known=formats.TRAINED).fmt


def check_map_fn(fmt: str, dataset_map_fn: str | None, path: Path | str = "the data") -> None:
    """Fail before training when ``dataset_map_fn`` does not fit the data format (02_your_own_data)."""
    wanted = formats.FORMATS[fmt].map_fn
    if dataset_map_fn == wanted:
        return
    if fmt not in formats.TRAINED:
        raise DataFormatError(f"{path} is in {fmt!r} format: dataset_map_fn {wanted}, not {dataset_map_fn}. "
                              "Simplest fix: formats.convert_file to conversation JSONL, then dataset_map_fn=None.")
    raise DataFormatError(
        f"{path} is in {fmt!r} format, which needs dataset_map_fn={wanted}, but the config uses "
        f"{dataset_map_fn}. Training would fail with KeyError ('text' / 'messages'). Set dataset_map_fn={wanted} "
        "(docs/troubleshooting.md#8)."
    )


def split_records(records: list[dict], eval_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """A seeded train/eval split; each part keeps the original order (02_your_own_data)."""
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}.")
    n_eval = round(len(records) * eval_fraction)
    if eval_fraction and not 0 < n_eval < len(records):
        raise ValueError(f"{len(records)} records are too few for eval_fraction={eval_fraction}.")
    chosen = set(random.Random(seed).sample(range(len(records)), n_eval))
    return ([r for i, r in enumerate(records) if i not in chosen], [r for i, r in enumerate(records) if i in chosen])


# --- the real xtuner check ------------------------------------------------------------------------

def check_custom_dataset(config: Path, log_path: Path | None = None) -> cli.XtunerRun:
    """Run the real ``xtuner check-custom-dataset CONFIG``; judged by its output, not its exit code (02_your_own_data)."""
    run = cli.run_xtuner("check-custom-dataset", str(config), log_path=log_path, env={"PYTHONWARNINGS": "ignore"})
    cli.require("encoded input_ids" in run.output and run.traceback is None, run, "encoded samples",
                "Read the error above: usually the data format and dataset_map_fn do not match.")
    return run


def check_output_sections(output: str) -> dict[str, str]:
    """The ``#### title ####`` sections that ``xtuner check-custom-dataset`` prints, by title (02_your_own_data)."""
    sections, title = {}, None
    for line in output.splitlines():
        if line.startswith("#" * 20) and line.endswith("#" * 20):
            title = line.strip("# ").strip("`")
            sections[title] = ""
        elif title is not None and not line.startswith(("Map", "Flattening", "Setting", "Generating", "Filter")):
            sections[title] += line + "\n"
    return {k: v.strip() for k, v in sections.items()}
