"""Chat data files: the four formats, reading (JSONL, JSON, .xlsx, .csv), checking records, converting and writing."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from . import files


class Format(NamedTuple):
    """A chat data format: the key that marks its records, its name in messages, the ``dataset_map_fn`` XTuner needs."""

    key: str
    name: str
    map_fn: str | None


# The one format table. XTuner trains on the first two as they are (the course writes them); ShareGPT has no
# dataset_map_fn in xtuner 0.2.0, so it (like Alpaca, in the course) is converted to ``conversation`` first.
FORMATS = {
    "conversation": Format("conversation", "'conversation' (XTuner)", None),
    "openai": Format("messages", "'messages' (OpenAI)", "openai_map_fn"),
    "alpaca": Format("instruction", "'instruction'/'input'/'output' (Alpaca)", "alpaca_map_fn"),
    "sharegpt": Format("conversations", "'conversations' (ShareGPT)", "(none: convert to conversation first)"),
}
TRAINED = ("conversation", "openai")  # the formats the course's configs train on
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}  # ShareGPT "from" -> OpenAI role
TABLE_ENCODINGS = ("utf-8-sig", "gb18030")  # Excel saves "CSV" as GBK/GB18030 on Chinese Windows
ENCODING_NAMES = {"utf-8-sig": "UTF-8", "gb18030": "GBK/GB18030"}  # as the learner knows them
# Files the notebooks write into the working folder's data/, by name prefix, and the notebook that writes them.
WRITTEN_BY = {"self_cognition": "01", "own_data": "02", "math_qa": "02", "sharegpt_converted": "02"}


class DataFormatError(ValueError):
    """Raised for data that XTuner would reject or misread; the message names file, line and fix."""


@dataclass
class Loaded:
    """Records read from one file, each with where it came from (``line 3``, ``record 3``)."""

    path: Path
    fmt: str
    records: list[dict]
    where: list[str]


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


class PretrainTurn(BaseModel):
    """XTuner's pre-training format: no question, the text to learn as the answer (09_pretrain)."""

    model_config = ConfigDict(extra="forbid")
    input: Literal[""]
    output: str = Field(pattern=r"\S")


class PretrainRecord(BaseModel):
    conversation: list[PretrainTurn] = Field(min_length=1, max_length=1)


# ChatML, as the course's prompt templates (qwen_chat, internlm2_chat) write a conversation. XTuner's preference
# dataset builds its samples with ``tokenizer.apply_chat_template``; the course's configs give the tokenizer this
# template (the course models ship none) and the validator and the scoring use the same one (10_preference).
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PREFERENCE_KEYS = ("prompt", "chosen", "rejected")


class Message(_NonEmpty):
    role: Literal["system", "user", "assistant"]
    content: str


class PreferenceRecord(BaseModel):
    """XTuner's preference pair: the conversation so far, then one better and one worse assistant answer (10_preference)."""

    prompt: list[Message] = Field(min_length=1)
    chosen: list[Message] = Field(min_length=1, max_length=1)
    rejected: list[Message] = Field(min_length=1, max_length=1)

    @field_validator("prompt")
    @classmethod
    def _ends_with_user(cls, messages):
        if messages[-1].role != "user":
            raise ValueError("the prompt must end with a 'user' message")
        return messages

    @field_validator("chosen", "rejected")
    @classmethod
    def _assistant_answer(cls, messages):
        if messages[0].role != "assistant":
            raise ValueError("the answer must be one 'assistant' message")
        return messages


_SCHEMAS = {"chat": TypeAdapter(list[ConversationRecord]), "pretrain": TypeAdapter(list[PretrainRecord]),
            "preference": TypeAdapter(list[PreferenceRecord])}


def preference_record(question: str, chosen: str, rejected: str, system: str = "") -> dict:
    """One preference pair in the message-list form XTuner's preference dataset reads (10_preference)."""
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


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


def schema_errors(records: list[dict], kind: str = "chat") -> list[tuple[int, str, str]]:
    """Every schema error of ``conversation`` records (``kind`` "pretrain": pre-training records; "preference":
    preference pairs) as (index, field, message); for chat records pydantic sees only doubtful ones (used by validation)."""
    doubtful = [i for i, r in enumerate(records) if kind != "chat" or not _plainly_valid(r)]
    try:
        _SCHEMAS[kind].validate_python([records[i] for i in doubtful])
    except ValidationError as exc:
        return [(doubtful[e["loc"][0]], ".".join(str(p) for p in e["loc"][1:]), e["msg"]) for e in exc.errors()]
    return []


# --- reading ---------------------------------------------------------------------------------

def _require_file(path: Path) -> Path:
    """``path`` if it is a file; else an error naming it and the fix for that file."""
    path = Path(path)
    if path.is_file():
        return path
    notebook = next((nb for prefix, nb in WRITTEN_BY.items() if path.name.startswith(prefix)), None)
    if notebook and path.parent.name == "data":
        fix = f"Notebook {notebook} writes it: run notebook {notebook} first (same working folder), or fix the path."
    else:
        fix = "Check the path and the file name (relative paths start at the notebooks/ folder)."
    raise DataFormatError(f"{path} does not exist. {fix}")


def _decode(path: Path, encodings: tuple[str, ...], advice: str | None = None) -> tuple[str, str]:
    """The text of ``path`` and the first of ``encodings`` that explains every byte; else an error naming the line
    (and ``advice``, when given, as the fix)."""
    raw, failures = path.read_bytes(), []
    for encoding in encodings:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            failures.append(exc)
    first = max(failures, key=lambda exc: exc.start)  # the byte that even the best-fitting encoding cannot explain
    line = raw[: first.start].count(b"\n") + 1
    tried = " or ".join(ENCODING_NAMES[e] for e in encodings)
    advice = advice or ("probably GBK or another legacy encoding. Save it as UTF-8 (Excel: 'CSV UTF-8'; editors: "
              "'Save with Encoding: UTF-8'), or convert it: iconv -f GBK -t UTF-8 IN > OUT."
              if len(encodings) == 1 else "so it is not text in an encoding the course knows, or the file is damaged. "
              "Open it in Excel or WPS and save it again as 'CSV UTF-8', or as .xlsx.")
    raise DataFormatError(f"{path}, line {line}: not {tried} text (byte 0x{raw[first.start]:02x} at offset "
                          f"{first.start}); {advice}")


def _read_text(path: Path) -> str:
    """A UTF-8 text file, with or without a BOM; other encodings are an error naming line and fix."""
    return _decode(_require_file(path), ("utf-8-sig",))[0]


def _jsonl_records(path: Path, text: str) -> list[tuple[str, dict]]:
    if text.lstrip().startswith("["):
        raise DataFormatError(f"{path} holds a JSON array, not JSON Lines. Write one object per line "
                              "(formats.write_jsonl does), or rename the file to .json.")
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
        records.append((f"line {number}", record))
    return records


def _json_array_records(path: Path, text: str) -> list[tuple[str, dict]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = (" It looks like JSON Lines (one object per line): rename it to .jsonl."
                if exc.msg == "Extra data" else " Fix the JSON there (a missing comma, quote or bracket?).")
        raise DataFormatError(f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}).{hint}") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise DataFormatError(f"{path}: expected a non-empty JSON array of objects, got {type(value).__name__}.")
    for number, record in enumerate(value, start=1):
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}, record {number}: expected a JSON object, got {type(record).__name__}.")
    return [(f"record {n}", r) for n, r in enumerate(value, start=1)]


def _read_records(path: Path) -> list[tuple[str, dict]]:
    """Records of a ``.jsonl`` or ``.json`` file (UTF-8, BOM or not), each with its line or position."""
    path = _require_file(path)
    readers = {".jsonl": _jsonl_records, ".json": _json_array_records}
    if path.suffix.lower() not in readers:
        raise DataFormatError(f"{path}: unsupported file type {path.suffix!r}. Use .jsonl or .json for records, "
                              ".xlsx or .csv for a question/answer table (formats.read_table).")
    records = readers[path.suffix.lower()](path, _read_text(path))
    if not records:
        raise DataFormatError(f"{path} is empty: it holds no records. Write records into it (or regenerate it).")
    return records


def read_jsonl(path: Path) -> list[dict]:
    """The records of a ``.jsonl`` (or ``.json``) file; errors name the file, the line and the fix (01_self_cognition_data)."""
    return [record for _, record in _read_records(path)]


def _detect_format(record: dict, where: str = "record", known: tuple[str, ...] = tuple(FORMATS)) -> str:
    """Which of the ``known`` formats a record is in, from its keys."""
    for fmt in known:
        if FORMATS[fmt].key in record:
            return fmt
    raise DataFormatError(
        f"{where}: unknown format with keys {sorted(record)}. Expected one of: "
        f"{', '.join(FORMATS[f].name for f in known)}. Rename the keys, or convert the file first (notebook 02)."
    )


def load_records(path: Path, known: tuple[str, ...] = tuple(FORMATS)) -> Loaded:
    """Read a record file and detect its one format; mixed formats are an error (02_your_own_data)."""
    path = Path(path)
    rows = _read_records(path)
    fmt = _detect_format(rows[0][1], f"{path}, {rows[0][0]}", known)
    for where, record in rows:
        if _detect_format(record, f"{path}, {where}", known) != fmt:
            raise DataFormatError(f"{path}, {where}: format differs from the first record ({fmt}); keep one format per file.")
    return Loaded(path, fmt, [r for _, r in rows], [w for w, _ in rows])


def load_preference(path: Path) -> Loaded:
    """Read a preference file (JSONL/JSON of prompt/chosen/rejected records); a chat-format file is refused with the
    difference explained, missing or wrong fields are left to the validator to report by line (used by validation)."""
    path = Path(path)
    rows = _read_records(path)
    where, first = rows[0]
    if not any(key in first for key in PREFERENCE_KEYS):
        fmt = next((f for f, spec in FORMATS.items() if spec.key in first), None)
        what = f"chat data in the {FORMATS[fmt].name} format" if fmt else f"records with keys {sorted(first)}"
        raise DataFormatError(f"{path}, {where}: this holds {what}, not preference pairs. A preference record has "
                              "'prompt' (messages ending with the user's), 'chosen' and 'rejected' (one assistant "
                              "message each); formats.preference_record writes one.")
    return Loaded(path, "preference", [r for _, r in rows], [w for w, _ in rows])


# --- writing ---------------------------------------------------------------------------------

def write_jsonl(records: list[dict], path: Path, overwrite: bool = False) -> Path:
    """Write one JSON object per line, UTF-8, atomically; refuses to replace a file unless told (01_self_cognition_data)."""
    if not records:
        raise DataFormatError(f"Refusing to write {path}: there are no records. Check the step that built them.")
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return files.atomic_write_text(Path(path), text, overwrite=overwrite)


# --- tables: xlsx and csv -----------------------------------------------------------------------

def _cell_text(value) -> str:
    """A sheet cell as the text the learner sees: numbers without ``.0``, dates as ISO, empty as ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _sheet_rows(path: Path, sheet: str | int | None) -> list[list[str]]:
    """Rows of one worksheet as text cells, read with openpyxl."""
    import openpyxl  # deferred like pandas: 0.15 s to import, and only sheets need it

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile.BadZipFile, InvalidFileException, KeyError for a broken workbook
        raise DataFormatError(f"{path} is not a readable .xlsx workbook ({type(exc).__name__}). "
                              "Open it in Excel or WPS and save it again as .xlsx (not .xls or .csv).") from None
    try:
        if isinstance(sheet, int) and not 0 <= sheet < len(book.sheetnames):
            raise DataFormatError(f"{path}: no sheet number {sheet}; the workbook has sheets {book.sheetnames} (0 is the first).")
        if sheet is None or isinstance(sheet, int):
            worksheet = book.worksheets[sheet or 0]
        elif sheet in book.sheetnames:
            worksheet = book[sheet]
        else:
            raise DataFormatError(f"{path}: no sheet named {sheet!r}; the workbook has sheets {book.sheetnames}.")
        return [[_cell_text(v) for v in row] for row in worksheet.iter_rows(values_only=True)]
    finally:
        book.close()


def _find_header(rows: list[list[str]], columns: list[str], header_row: int | None, path: Path) -> int:
    """The 0-based index of the header row: ``header_row`` (as Excel numbers rows), or the first row holding every column."""
    if not any(c.strip() for r in rows for c in r):
        raise DataFormatError(f"{path} is empty (no header row). Put column names in row 1 and data below.")
    if header_row is not None:
        if not 1 <= header_row <= len(rows) or not any(c.strip() for c in rows[header_row - 1]):
            raise DataFormatError(f"{path}: row {header_row} (header_row) is empty or past the last row "
                                  f"({len(rows)}). Set header_row to the row that holds the column names.")
        return header_row - 1
    for index, row in enumerate(rows):
        cells = {c.strip() for c in row}
        if columns and set(columns) <= cells or not columns and cells - {""}:
            return index
    filled = [(i, [c.strip() for c in r if c.strip()]) for i, r in enumerate(rows)]
    shown = [f"row {i + 1}: {cells[:6]}" for i, cells in filled if cells][:3]
    raise DataFormatError(f"{path}: no row holds all of the columns {columns}; the first rows are {shown}. "
                          "Set the question/answer column parameters to names in the header row, or header_row to its number.")


def read_table(path: Path, sheet: str | int | None = None, columns: list[str] = (), header_row: int | None = None):
    """An .xlsx sheet or a .csv (UTF-8 or GBK) as a DataFrame of text, indexed by the row numbers Excel shows; the header is
    ``header_row`` or the first row holding all ``columns`` (title rows above it are skipped) (02_your_own_data)."""
    import pandas as pd

    path = _require_file(path)
    encoding = None
    if path.suffix.lower() == ".xlsx":
        rows = _sheet_rows(path, sheet)
    elif path.suffix.lower() == ".csv":
        text, encoding = _decode(path, TABLE_ENCODINGS)
        rows = list(csv.reader(io.StringIO(text, newline="")))
    else:
        raise DataFormatError(f"{path}: unsupported table type {path.suffix!r}; save the sheet as .xlsx or .csv.")
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()  # trailing blank rows are formatting, not data
    where = f"sheet {sheet!r} of {path}" if sheet is not None else path
    top = _find_header(rows, list(columns), header_row, where)
    header = [c.strip() for c in rows[top]]
    width = len(header)
    body = [(r + [""] * width)[:width] for r in rows[top + 1:]]
    if not body:
        raise DataFormatError(f"{where} has a header (row {top + 1}) but no data rows. Add rows below the header.")
    frame = pd.DataFrame(body, columns=header, index=pd.RangeIndex(top + 2, top + len(body) + 2, name="row"), dtype=str)
    frame.attrs.update(source=str(path), header_row=top + 1, encoding=encoding)
    return frame


@dataclass
class CleaningReport:
    """What cleaning a question/answer table did, by the row numbers the learner sees."""

    source: str
    rows_read: int = 0
    trimmed_cells: int = 0
    empty: dict[int, list[str]] = field(default_factory=dict)  # row -> its empty columns (row skipped)
    duplicates: dict[int, int] = field(default_factory=dict)  # row -> the earlier row it repeats (row dropped)
    kept_rows: list[int] = field(default_factory=list)  # the row each written record came from

    @property
    def kept(self) -> int:
        """How many records were written (02_your_own_data)."""
        return len(self.kept_rows)

    def rows(self) -> list[dict]:
        """One line per skipped or dropped row, for a table in the notebook (02_your_own_data)."""
        out = [{"row": r, "problem": f"empty {', '.join(cols)}", "action": "skipped"} for r, cols in self.empty.items()]
        out += [{"row": r, "problem": f"duplicate of row {first}", "action": "dropped"} for r, first in self.duplicates.items()]
        return sorted(out, key=lambda x: x["row"])


def _require_columns(table, columns: list[str], source: str) -> None:
    """Fail unless the table has every named column; the error lists the columns it does have."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataFormatError(
            f"{source}: no column(s) {missing} in row {table.attrs.get('header_row', 1)} (the header row). "
            f"The columns are {list(table.columns)}. "
            "Set the question/answer column parameters to two of these names."
        )


def table_to_conversation(table, question: str, answer: str, system: str = "",
                          source: str = "table") -> tuple[list[dict], CleaningReport]:
    """Rows to single-turn ``conversation`` records: trimmed, empty rows reported, duplicates dropped (02_your_own_data)."""
    _require_columns(table, [question, answer], source)
    report, records, seen = CleaningReport(source, rows_read=len(table)), [], {}
    for row, q_raw, a_raw in zip(table.index, table[question], table[answer]):
        q, a = q_raw.strip(), a_raw.strip()
        report.trimmed_cells += (q != q_raw) + (a != a_raw)
        empty = [name for name, value in ((question, q), (answer, a)) if not value]
        if empty:
            report.empty[int(row)] = empty
        elif (q, a) in seen:
            report.duplicates[int(row)] = seen[(q, a)]
        else:
            seen[(q, a)] = int(row)
            report.kept_rows.append(int(row))
            records.append(conversation_record(q, a, system))
    if not records:
        raise DataFormatError(f"{source}: no row has both a {question!r} and an {answer!r} value. Fill in the sheet.")
    return records, report


# --- conversions --------------------------------------------------------------------------------

def conversation_record(question: str, answer: str, system: str = "") -> dict:
    """One single-turn record in XTuner's ``conversation`` format (01_self_cognition_data)."""
    turn = {"system": system, "input": question, "output": answer} if system else {"input": question, "output": answer}
    return {"conversation": [turn]}


def to_openai(record: dict) -> dict:
    """Convert a ``conversation`` record to OpenAI ``messages`` (01_self_cognition_data)."""
    messages = []
    for turn in record["conversation"]:
        if turn.get("system"):
            messages.append({"role": "system", "content": turn["system"]})
        messages += [{"role": "user", "content": turn["input"]}, {"role": "assistant", "content": turn["output"]}]
    return {"messages": messages}


def role_order_problems(roles: list[str]) -> list[str]:
    """What is wrong with a role sequence: [system], then user/assistant alternating, assistant last (used by validation)."""
    problems, expected = [], "user"
    offset = 1 if roles[:1] == ["system"] else 0
    for position, role in enumerate(roles[offset:], start=offset + 1):
        if role not in ("user", "assistant"):
            where = "only the first message may be 'system'" if role == "system" else "use user/assistant"
            problems.append(f"message {position} has role {role!r} ({where})")
            continue
        if role != expected:
            problems.append(f"message {position}: the conversation starts with 'assistant'" if position == offset + 1
                            else f"message {position}: two {role!r} messages in a row")
        expected = "assistant" if role == "user" else "user"
    if len(roles) == offset or roles[-1] != "assistant":
        problems.append("the last message is not from the assistant, so a turn has no output")
    return problems


def _turns_from_roles(pairs: list[tuple[str, str]], where: str) -> dict:
    """(role, text) pairs in strict order to a ``conversation`` record."""
    problems = role_order_problems([role for role, _ in pairs])
    if problems:
        raise DataFormatError(f"{where}: {problems[0]}. Order messages as [system], user, assistant, user, assistant...")
    system = pairs[0][1] if pairs[0][0] == "system" else ""
    body = pairs[1:] if pairs[0][0] == "system" else pairs
    turns = [{"input": body[i][1], "output": body[i + 1][1]} for i in range(0, len(body), 2)]
    if system:
        turns[0] = {"system": system, **turns[0]}
    return {"conversation": turns}


def from_openai(record: dict, where: str = "record") -> dict:
    """OpenAI ``messages`` to ``conversation``; the system message goes on the first turn (02_your_own_data)."""
    try:
        pairs = [(m["role"], m["content"]) for m in record["messages"]]
    except (KeyError, TypeError):
        raise DataFormatError(f"{where}: every message needs 'role' and 'content'.") from None
    return _turns_from_roles(pairs, where)


def _from_sharegpt(record: dict, where: str = "record") -> dict:
    """ShareGPT ``conversations`` (from human/gpt/system, value) to ``conversation``."""
    pairs = [("system", record["system"])] if record.get("system") else []
    if not isinstance(record["conversations"], list):
        raise DataFormatError(f"{where}: 'conversations' must be a list of {{'from': ..., 'value': ...}} messages.")
    for i, message in enumerate(record["conversations"], start=1):
        if not isinstance(message, dict) or message.get("from") not in SHAREGPT_ROLES or "value" not in message:
            raise DataFormatError(
                f"{where}: conversations[{i - 1}] needs 'from' (one of {list(SHAREGPT_ROLES)}) and 'value', got {message!r}."
            )
        pairs.append((SHAREGPT_ROLES[message["from"]], message["value"]))
    return _turns_from_roles(pairs, where)


def _from_alpaca(record: dict, where: str = "record") -> dict:
    """Alpaca ``instruction``/``input``/``output`` to one turn; a non-empty input follows the instruction on a new line."""
    output = record.get("output")
    if not isinstance(output, str) or not output.strip():
        raise DataFormatError(f"{where}: 'output' is missing or empty, so there is nothing to learn. "
                              "Fill it in or drop the record.")
    extra = record.get("input") or ""
    question = f"{record['instruction']}\n{extra}" if extra else record["instruction"]
    return conversation_record(question, output, record.get("system") or "")


def _to_sharegpt(record: dict) -> dict:
    """``conversation`` to ShareGPT; lossless both ways."""
    roles = {v: k for k, v in SHAREGPT_ROLES.items()}
    return {"conversations": [{"from": roles[m["role"]], "value": m["content"]} for m in to_openai(record)["messages"]]}


def _to_alpaca(record: dict, where: str = "record") -> dict:
    """A single-turn ``conversation`` to Alpaca (``input`` left empty); multi-turn records cannot be."""
    turns = record["conversation"]
    if len(turns) != 1:
        raise DataFormatError(f"{where}: Alpaca holds one turn, this record has {len(turns)}. Keep it as conversation or openai.")
    out = {"instruction": turns[0]["input"], "input": "", "output": turns[0]["output"]}
    return {"system": turns[0]["system"], **out} if turns[0].get("system") else out


def to_conversation(record: dict, fmt: str, where: str = "record") -> dict:
    """Any of the four formats to ``conversation`` (used by validation)."""
    if fmt == "conversation":
        return record
    if fmt == "openai":
        return from_openai(record, where)
    if fmt == "sharegpt":
        return _from_sharegpt(record, where)
    if fmt == "alpaca":
        return _from_alpaca(record, where)
    raise DataFormatError(f"{where}: unknown format {fmt!r}; known formats are {list(FORMATS)}.")


def from_conversation(record: dict, fmt: str, where: str = "record") -> dict:
    """``conversation`` to any of the four formats (Alpaca: single-turn only) (02_your_own_data)."""
    converters = {"conversation": lambda r: r, "openai": to_openai, "sharegpt": _to_sharegpt,
                  "alpaca": lambda r: _to_alpaca(r, where)}
    if fmt not in converters:
        raise DataFormatError(f"{where}: unknown format {fmt!r}; known formats are {list(FORMATS)}.")
    return converters[fmt](record)


def convert_loaded(loaded: Loaded) -> list[dict]:
    """Every record of a loaded file as ``conversation``; the first bad record raises, naming file and line (02_your_own_data)."""
    return [to_conversation(r, loaded.fmt, f"{loaded.path}, {w}") for r, w in zip(loaded.records, loaded.where)]


def convert_file(source: Path, dest: Path, overwrite: bool = False) -> Path:
    """Read any supported record file, convert it to ``conversation``, validate, then write JSONL atomically (02_your_own_data)."""
    dest = files.check_writable(Path(dest), overwrite)  # refuse before doing any work
    loaded = load_records(source)
    records = convert_loaded(loaded)
    for index, name, message in schema_errors(records)[:1]:
        raise DataFormatError(f"{loaded.path}, {loaded.where[index]}: {name}: {message}. Fix that record or drop it.")
    return write_jsonl(records, dest, overwrite=overwrite)
