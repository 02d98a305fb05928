"""Bring your own data: read sheets, CSV, JSON and JSONL in four chat formats, and convert them to XTuner ``conversation``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import data, files
from .data import DataFormatError

FORMATS = (*data.FORMATS, "alpaca", "sharegpt")
FORMAT_KEYS = data.FORMAT_KEYS
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}  # ShareGPT "from" -> OpenAI role
RECORD_SUFFIXES = (".jsonl", ".json")
TABLE_SUFFIXES = (".xlsx", ".csv")


@dataclass
class Loaded:
    """Records read from one file, each with where it came from (``line 3``, ``record 3``)."""

    path: Path
    fmt: str
    records: list[dict]
    where: list[str]


# --- reading ----------------------------------------------------------------------------------

def read_json_array(path: Path) -> list[tuple[str, dict]]:
    """A ``.json`` file holding an array of objects, each with its position (02_your_own_data)."""
    path = Path(path)
    text = data.read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = (" It looks like JSON Lines (one object per line): rename it to .jsonl."
                if exc.msg == "Extra data" else " Fix the JSON there (a missing comma, quote or bracket?).")
        raise DataFormatError(f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}).{hint}") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise DataFormatError(f"{path}: expected a non-empty JSON array of objects, got {type(value).__name__}.")
    for number, record in enumerate(value, start=1):
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}, record {number}: expected a JSON object, got {type(record).__name__}.")
    return [(f"record {n}", r) for n, r in enumerate(value, start=1)]


def read_records(path: Path) -> list[tuple[str, dict]]:
    """Records of a ``.jsonl`` or ``.json`` file (UTF-8, BOM or not), each with its line or position (02_your_own_data)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path} does not exist. Check the path (relative paths start at the notebooks/ folder).")
    if path.suffix.lower() == ".jsonl":
        return [(f"line {n}", r) for n, r in data.read_jsonl_numbered(path)]
    if path.suffix.lower() == ".json":
        return read_json_array(path)
    raise DataFormatError(
        f"{path}: unsupported file type {path.suffix!r}. Use .jsonl or .json for records, "
        f".xlsx or .csv for a question/answer table (formats.read_table)."
    )


def detect_format(record: dict, where: str = "record") -> str:
    """``conversation``, ``openai``, ``alpaca`` or ``sharegpt``, from a record's keys (02_your_own_data)."""
    return data.detect_format(record, where, FORMATS)


def load_records(path: Path) -> Loaded:
    """Read a record file and detect its one format; mixed formats are an error (02_your_own_data)."""
    path = Path(path)
    rows = read_records(path)
    fmt = detect_format(rows[0][1], f"{path}, {rows[0][0]}")
    for where, record in rows:
        if detect_format(record, f"{path}, {where}") != fmt:
            raise DataFormatError(f"{path}, {where}: format differs from the first record ({fmt}); keep one format per file.")
    return Loaded(path, fmt, [r for _, r in rows], [w for w, _ in rows])


# --- tables: xlsx and csv -----------------------------------------------------------------------

def cell_text(value) -> str:
    """A sheet cell as the text the learner sees: numbers without ``.0``, dates as ISO, empty as ``""`` (02_your_own_data)."""
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
    import openpyxl

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
        return [[cell_text(v) for v in row] for row in worksheet.iter_rows(values_only=True)]
    finally:
        book.close()


def read_table(path: Path, sheet: str | int | None = None):
    """An .xlsx sheet or a .csv as a DataFrame of text, indexed by the row number Excel shows (header = 1) (02_your_own_data)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path} does not exist. Check the path (relative paths start at the notebooks/ folder).")
    if path.suffix.lower() == ".xlsx":
        rows = _sheet_rows(path, sheet)
    elif path.suffix.lower() == ".csv":
        rows = list(csv.reader(io.StringIO(data.read_text(path), newline="")))
    else:
        raise DataFormatError(f"{path}: unsupported table type {path.suffix!r}; save the sheet as .xlsx or .csv (UTF-8).")
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()  # trailing blank rows are formatting, not data
    if not rows or not any(c.strip() for c in rows[0]):
        where = f"sheet {sheet!r} of " if sheet is not None else ""
        raise DataFormatError(f"{where}{path} is empty (no header in row 1). Put column names in row 1 and data below.")
    header = [c.strip() for c in rows[0]]
    width = len(header)
    body = [(r + [""] * width)[:width] for r in rows[1:]]
    if not body:
        raise DataFormatError(f"{path} has a header (row 1) but no data rows. Add rows below the header.")
    frame = pd.DataFrame(body, columns=header, index=pd.RangeIndex(2, len(body) + 2, name="row"), dtype=str)
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


def require_columns(table, columns: list[str], source: str) -> None:
    """Fail unless the table has every named column; the error lists the columns it does have (02_your_own_data)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataFormatError(
            f"{source}: no column(s) {missing} in row 1. The columns are {list(table.columns)}. "
            "Set the question/answer column parameters to two of these names."
        )


def table_to_conversation(table, question: str, answer: str, system: str = "",
                          source: str = "table") -> tuple[list[dict], CleaningReport]:
    """Rows to single-turn ``conversation`` records: trimmed, empty rows reported, duplicates dropped (02_your_own_data)."""
    require_columns(table, [question, answer], source)
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
            records.append(data.conversation_record(q, a, system))
    if not records:
        raise DataFormatError(f"{source}: no row has both a {question!r} and an {answer!r} value. Fill in the sheet.")
    return records, report


# --- conversions --------------------------------------------------------------------------------

def role_order_problems(roles: list[str]) -> list[str]:
    """What is wrong with a role sequence: [system], then user/assistant alternating, assistant last (02_your_own_data)."""
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


def from_sharegpt(record: dict, where: str = "record") -> dict:
    """ShareGPT ``conversations`` (from human/gpt/system, value) to ``conversation`` (02_your_own_data)."""
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


def from_alpaca(record: dict, where: str = "record") -> dict:
    """Alpaca ``instruction``/``input``/``output`` to one turn; a non-empty input follows the instruction on a new line (02_your_own_data)."""
    output = record.get("output")
    if not isinstance(output, str) or not output.strip():
        raise DataFormatError(f"{where}: 'output' is missing or empty, so there is nothing to learn. Fill it in or drop the record.")
    extra = record.get("input") or ""
    question = f"{record['instruction']}\n{extra}" if extra else record["instruction"]
    return data.conversation_record(question, output, record.get("system") or "")


def to_sharegpt(record: dict) -> dict:
    """``conversation`` to ShareGPT; lossless both ways (02_your_own_data)."""
    roles = {v: k for k, v in SHAREGPT_ROLES.items()}
    return {"conversations": [{"from": roles[m["role"]], "value": m["content"]} for m in data.to_openai(record)["messages"]]}


def to_alpaca(record: dict, where: str = "record") -> dict:
    """A single-turn ``conversation`` to Alpaca (``input`` left empty); multi-turn records cannot be (02_your_own_data)."""
    turns = record["conversation"]
    if len(turns) != 1:
        raise DataFormatError(f"{where}: Alpaca holds one turn, this record has {len(turns)}. Keep it as conversation or openai.")
    out = {"instruction": turns[0]["input"], "input": "", "output": turns[0]["output"]}
    return {"system": turns[0]["system"], **out} if turns[0].get("system") else out


def to_conversation(record: dict, fmt: str, where: str = "record") -> dict:
    """Any of the four formats to ``conversation`` (02_your_own_data)."""
    if fmt == "conversation":
        return record
    if fmt == "openai":
        return from_openai(record, where)
    if fmt == "sharegpt":
        return from_sharegpt(record, where)
    if fmt == "alpaca":
        return from_alpaca(record, where)
    raise DataFormatError(f"{where}: unknown format {fmt!r}; known formats are {list(FORMATS)}.")


def from_conversation(record: dict, fmt: str, where: str = "record") -> dict:
    """``conversation`` to any of the four formats (Alpaca: single-turn only) (02_your_own_data)."""
    converters = {"conversation": lambda r: r, "openai": data.to_openai, "sharegpt": to_sharegpt,
                  "alpaca": lambda r: to_alpaca(r, where)}
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
    for index, name, message in data.schema_errors(records, "conversation")[:1]:
        raise DataFormatError(f"{loaded.path}, {loaded.where[index]}: {name}: {message}. Fix that record or drop it.")
    return data.write_jsonl(records, dest, overwrite=overwrite)


def write_json(records: list[dict], path: Path, overwrite: bool = False) -> Path:
    """Write records as one indented JSON array, UTF-8, atomically (02_your_own_data)."""
    if not records:
        raise DataFormatError(f"Refusing to write {path}: there are no records.")
    text = json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    return files.atomic_write_text(Path(path), text, overwrite=overwrite)
