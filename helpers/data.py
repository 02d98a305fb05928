"""Training data: self-cognition generation, the two JSONL formats, validation and token lengths."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from . import files
from .workspace import DATASETS_DIR

FORMATS = ("conversation", "openai")  # the formats XTuner trains on directly
# The key that marks each format; formats.py converts the last two (02_your_own_data).
FORMAT_KEYS = {"conversation": "conversation", "openai": "messages", "alpaca": "instruction", "sharegpt": "conversations"}
FORMAT_NAMES = {"conversation": "'conversation' (XTuner)", "openai": "'messages' (OpenAI)",
                "alpaca": "'instruction'/'input'/'output' (Alpaca)", "sharegpt": "'conversations' (ShareGPT)"}
MAP_FNS = {"conversation": None, "openai": "openai_map_fn"}  # the dataset_map_fn each format needs


class DataFormatError(ValueError):
    """Raised for data that XTuner would reject or misread; the message names file, line and fix."""


# --- record schemas -------------------------------------------------------------------------

class _NonEmpty(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _not_blank(cls, value, info):
        if isinstance(value, str) and info.field_name != "system" and not value.strip():
            raise ValueError(f"'{info.field_name}' is empty")
        return value


class Turn(_NonEmpty):
    system: str = ""
    input: str
    output: str


class ConversationRecord(BaseModel):
    conversation: list[Turn] = Field(min_length=1)


class Message(_NonEmpty):
    role: Literal["system", "user", "assistant"]
    content: str


class OpenAIRecord(BaseModel):
    messages: list[Message] = Field(min_length=2)

    @field_validator("messages")
    @classmethod
    def _needs_assistant(cls, messages):
        if not any(m.role == "assistant" for m in messages):
            raise ValueError("no 'assistant' message, so there is nothing to learn")
        return messages


SCHEMAS = {"conversation": ConversationRecord, "openai": OpenAIRecord}
_LIST_ADAPTERS = {fmt: TypeAdapter(list[schema]) for fmt, schema in SCHEMAS.items()}


def _plainly_valid(record) -> bool:
    """A quick exact check of a well-formed ``conversation`` record, so pydantic only sees the doubtful ones."""
    turns = record.get("conversation") if type(record) is dict and len(record) == 1 else None
    if type(turns) is not list or not turns:
        return False
    for turn in turns:
        if type(turn) is not dict or not turn.keys() <= {"system", "input", "output"}:
            return False
        question, answer, system = turn.get("input"), turn.get("output"), turn.get("system", "")
        if type(question) is not str or type(answer) is not str or type(system) is not str:
            return False
        if not question.strip() or not answer.strip():
            return False
    return True


def schema_errors(records: list[dict], fmt: str) -> list[tuple[int, str, str]]:
    """Every schema error of ``records`` as (index, field, message); pydantic checks only doubtful records (02_your_own_data)."""
    doubtful = [i for i, r in enumerate(records) if fmt != "conversation" or not _plainly_valid(r)]
    try:
        _LIST_ADAPTERS[fmt].validate_python([records[i] for i in doubtful])
    except ValidationError as exc:
        return [(doubtful[e["loc"][0]], ".".join(str(p) for p in e["loc"][1:]), e["msg"]) for e in exc.errors()]
    return []


# --- building data ----------------------------------------------------------------------------

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


def load_general_prompts(path: Path = DATASETS_DIR / "general_prompts.json") -> list[str]:
    """The shipped general prompts that the base model answers for self-distillation (01_self_cognition_data)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["prompts"]


def trim_to_sentence(text: str) -> str:
    """Cut a length-limited answer back to its last complete sentence, if it has one (01_self_cognition_data)."""
    ends = [m.end() for m in re.finditer(r"[.!?。！？](?=\s|$)|[。！？]", text)]
    return text[: ends[-1]].strip() if ends else text.strip()


def conversation_record(question: str, answer: str, system: str = "") -> dict:
    """One single-turn record in XTuner's ``conversation`` format (01_self_cognition_data)."""
    turn = {"system": system, "input": question, "output": answer} if system else {"input": question, "output": answer}
    return {"conversation": [turn]}


def mix(*parts: list[dict], seed: int = 0) -> list[dict]:
    """All records of ``parts`` in one seeded shuffled list (01_self_cognition_data)."""
    records = [r for part in parts for r in part]
    random.Random(seed).shuffle(records)
    return records


def to_openai(record: dict) -> dict:
    """Convert a ``conversation`` record to OpenAI ``messages`` (01_self_cognition_data)."""
    messages = []
    for turn in record["conversation"]:
        if turn.get("system"):
            messages.append({"role": "system", "content": turn["system"]})
        messages += [{"role": "user", "content": turn["input"]}, {"role": "assistant", "content": turn["output"]}]
    return {"messages": messages}


# --- files ------------------------------------------------------------------------------------

def write_jsonl(records: list[dict], path: Path, overwrite: bool = False) -> Path:
    """Write one JSON object per line, UTF-8, atomically; refuses to replace a file unless told (01_self_cognition_data)."""
    if not records:
        raise DataFormatError(f"Refusing to write {path}: there are no records. Check the step that built them.")
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return files.atomic_write_text(Path(path), text, overwrite=overwrite)


def read_text(path: Path) -> str:
    """A UTF-8 text file, with or without a BOM; other encodings are an error naming line and fix (02_your_own_data)."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); probably GBK or "
            "another legacy encoding. Save it as UTF-8 (Excel: 'CSV UTF-8'; editors: 'Save with Encoding: UTF-8'), "
            "or convert it: iconv -f GBK -t UTF-8 IN > OUT."
        ) from None


def read_jsonl_numbered(path: Path) -> list[tuple[int, dict]]:
    """Every record of a JSONL file with its line number; errors name the file, the line and the fix (02_your_own_data)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"Data file {path} does not exist. Run notebook 01 first, or fix the data path.")
    text = read_text(path)
    if text.lstrip().startswith("["):
        raise DataFormatError(
            f"{path} holds a JSON array, not JSON Lines. Write one object per line "
            "(helpers.data.write_jsonl does), or rename the file to .json."
        )
    records = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 stays raw in JSON strings
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}, line {number}, column {exc.colno}: invalid JSON ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}.")
        records.append((number, record))
    if not records:
        raise DataFormatError(f"{path} is empty: it holds no records. Regenerate it (notebook 01).")
    return records


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; errors name the file, the line and the fix (01_self_cognition_data)."""
    return [record for _, record in read_jsonl_numbered(path)]


def detect_format(record: dict, where: str = "record", known: tuple[str, ...] = FORMATS) -> str:
    """Which of the ``known`` formats a record is in, from its keys (01_self_cognition_data)."""
    for fmt in known:
        if FORMAT_KEYS[fmt] in record:
            return fmt
    raise DataFormatError(
        f"{where}: unknown format with keys {sorted(record)}. Expected one of: "
        f"{', '.join(FORMAT_NAMES[f] for f in known)}. Rename the keys, or convert the file first (notebook 02)."
    )


def validate_file(path: Path, dataset_map_fn: str | None = "auto") -> str:
    """Check every record of a JSONL file and return its format; ``dataset_map_fn`` must match it (03_xtuner_config)."""
    records = read_jsonl(path)
    fmt = detect_format(records[0], f"{path}, line 1")
    schema = SCHEMAS[fmt]
    for number, record in enumerate(records, start=1):
        where = f"{path}, record {number}"
        if detect_format(record, where) != fmt:
            raise DataFormatError(f"{where}: format differs from record 1 ({fmt}); keep one format per file.")
        try:
            schema.model_validate(record)
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(p) for p in problem["loc"])
            raise DataFormatError(f"{where}: {field}: {problem['msg']}.") from None
    if dataset_map_fn != "auto":
        check_map_fn(fmt, dataset_map_fn, path)
    return fmt


def check_map_fn(fmt: str, dataset_map_fn: str | None, path: Path | str = "the data") -> None:
    """Fail before training when ``dataset_map_fn`` does not fit the data format (03_xtuner_config)."""
    wanted = MAP_FNS[fmt]
    if dataset_map_fn != wanted:
        raise DataFormatError(
            f"{path} is in {fmt!r} format, which needs dataset_map_fn={wanted}, but the config uses "
            f"{dataset_map_fn}. Training would fail with KeyError ('text' / 'messages'). Set dataset_map_fn={wanted} "
            "(docs/troubleshooting.md#8)."
        )


# --- token lengths ----------------------------------------------------------------------------

def token_lengths(records: list[dict], tokenizer, template_name: str) -> list[int]:
    """Tokens per record exactly as xtuner encodes it (template, bos/eos), before truncation (01_self_cognition_data)."""
    from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    apply_template = template_map_fn_factory(template=PROMPT_TEMPLATE[template_name])
    lengths = []
    for record in records:
        record = copy.deepcopy(record)  # xtuner's map functions edit records in place
        example = openai_map_fn(record) if detect_format(record) == "openai" else record
        example.update(apply_template(example))
        lengths.append(len(encode_fn(example, tokenizer, max_length=10**9)["input_ids"]))
    return lengths


def length_summary(lengths: list[int], max_length: int) -> dict:
    """Count, mean, max and how many samples ``max_length`` would truncate (01_self_cognition_data)."""
    over = sum(n > max_length for n in lengths)
    return {"samples": len(lengths), "mean_tokens": round(sum(lengths) / len(lengths), 1), "max_tokens": max(lengths),
            "max_length": max_length, "truncated": over, "truncated_share": round(over / len(lengths), 4)}
