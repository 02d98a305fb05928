"""Bring-your-own-data readers and converters: sheets, CSV, JSON/JSONL, four chat formats, and every bad input."""

import datetime as dt
import json

import openpyxl
import pytest

from helpers import formats, validation
from helpers.workspace import DATASETS_DIR

CONV = {"conversation": [{"system": "S", "input": "Q1", "output": "A1"}, {"input": "Q2", "output": "A2"}]}
ONE = {"conversation": [{"system": "S", "input": "Q", "output": "A"}]}


def write_xlsx(path, rows, sheet="Sheet1"):
    book = openpyxl.Workbook()
    book.active.title = sheet
    for row in rows:
        book.active.append(row)
    book.save(path)
    return path


# --- the shipped samples --------------------------------------------------------------------------

def test_career_sheet_cleaning_by_excel_row():
    table = formats.read_table(DATASETS_DIR / "career_coach.xlsx", "问答")
    assert table.index[0] == 2 and list(table.columns[:3]) == ["编号", "问题", "回答"]
    records, report = formats.table_to_conversation(table, "问题", "回答", "SYS", "career")
    assert report.empty == {7: ["回答"], 12: ["问题"], 17: ["回答"], 38: ["问题", "回答"]}
    assert report.duplicates == {10: 9, 24: 23} and report.trimmed_cells == 5
    assert report.kept == len(records) == 33 and len(report.kept_rows) == 33 and 7 not in report.kept_rows
    outputs = [r["conversation"][0]["output"] for r in records]
    assert "1" in outputs and "2025-10-31" in outputs and "8" in outputs  # number, date, float 8.0 read as text
    assert not any(o in ("nan", "None", "") or o != o.strip() for o in outputs)
    assert all(r["conversation"][0]["system"] == "SYS" for r in records)
    assert [r["row"] for r in report.rows()] == [7, 10, 12, 17, 24, 38]


@pytest.mark.parametrize("name, fmt, n, lossless", [
    ("openai_messages.json", "openai", 3, True),
    ("sharegpt.jsonl", "sharegpt", 3, True),
    ("alpaca.json", "alpaca", 3, False),  # instruction + "\n" + input cannot be split again
    ("bom_conversation.jsonl", "conversation", 2, True),
    ("math_qa.jsonl", "conversation", 8, True),
    ("multi_turn.jsonl", "conversation", 5, True),
])
def test_shipped_files_load_convert_and_come_back(name, fmt, n, lossless):
    loaded = formats.load_records(DATASETS_DIR / name)
    assert loaded.fmt == fmt and len(loaded.records) == n
    converted = formats.convert_loaded(loaded)
    assert formats.schema_errors(converted) == []
    assert ([formats.from_conversation(r, fmt) for r in converted] == loaded.records) is lossless


def test_csv_with_bom_quotes_commas_and_newlines():
    table = formats.read_table(DATASETS_DIR / "career_extra.csv")
    assert list(table.columns) == ["问题", "回答"] and list(table.index) == [2, 3, 4, 5]
    assert table.loc[4, "回答"].count("\n") == 3 and '"精通"' in table.loc[5, "问题"]


def test_math_bytes_survive_the_round_trip(tmp_path):
    source = DATASETS_DIR / "math_qa.jsonl"
    records = formats.load_records(source).records
    copy = formats.write_jsonl(formats.convert_loaded(formats.load_records(source)), tmp_path / "m.jsonl")
    assert copy.read_bytes() == source.read_bytes()
    text = "".join(t["output"] for r in records for t in r["conversation"])
    assert r"\frac" in text and r"\int" in text and r"\begin{aligned}" in text and "\\\\" in text and "\f" not in text
    via_openai = [formats.from_openai(formats.to_openai(r)) for r in records]
    assert via_openai == records


# --- conversions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["conversation", "openai", "sharegpt"])
def test_multi_turn_round_trip_is_lossless(fmt):
    there = formats.from_conversation(CONV, fmt)
    assert formats._detect_format(there) == fmt
    assert formats.to_conversation(there, fmt) == CONV


def test_sharegpt_and_openai_shapes():
    assert formats._to_sharegpt(ONE) == {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"},
                                                          {"from": "gpt", "value": "A"}]}
    assert formats.from_openai({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}) == \
        {"conversation": [{"input": "Q", "output": "A"}]}


def test_alpaca_both_ways():
    assert formats._from_alpaca({"instruction": "Do", "input": "this", "output": "Done"}) == \
        {"conversation": [{"input": "Do\nthis", "output": "Done"}]}
    assert formats._from_alpaca({"instruction": "Do", "input": "", "output": "Done"}) == \
        {"conversation": [{"input": "Do", "output": "Done"}]}
    assert formats.to_conversation(formats._to_alpaca(ONE), "alpaca") == ONE
    with pytest.raises(formats.DataFormatError, match="Alpaca holds one turn, this record has 2"):
        formats._to_alpaca(CONV, "x.jsonl, line 4")


@pytest.mark.parametrize("roles, message", [
    (["user", "user", "assistant"], "message 2: two 'user' messages in a row"),
    (["assistant", "user", "assistant"], "message 1: the conversation starts with 'assistant'"),
    (["system", "user"], "the last message is not from the assistant"),
    (["user", "assistant", "system", "user", "assistant"], "message 3 has role 'system'"),
    (["user", "bot"], "message 2 has role 'bot'"),
])
def test_role_order_problems(roles, message):
    assert any(message in p for p in formats.role_order_problems(roles))


def test_good_role_order_has_no_problems():
    assert formats.role_order_problems(["system", "user", "assistant", "user", "assistant"]) == []
    assert formats.role_order_problems(["user", "assistant"]) == []


# --- files: every bad input, named, and nothing overwritten ------------------------------------------

def _bad_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


BAD_RECORD_FILES = [
    ("broken.jsonl", '{"conversation": [{"input": "a", "output": "b"}]}\n{"conversation": [\n',
     r"broken.jsonl, line 2, column \d+: invalid JSON"),
    ("broken.json", '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]',
     r"broken.json, line 3, column \d+: invalid JSON"),
    ("array.jsonl", '[{"conversation": [{"input": "a", "output": "b"}]}]', r"array.jsonl holds a JSON array, not JSON Lines"),
    ("lines.json", '{"conversation": [{"input": "a", "output": "b"}]}\n{"conversation": [{"input": "a", "output": "b"}]}\n',
     r"lines.json, line 2, column 1: invalid JSON \(Extra data\).*rename it to .jsonl"),
    ("gbk.jsonl", '{"conversation": [{"input": "你好", "output": "再见"}]}\n'.encode("gbk"),
     r"gbk.jsonl, line 1: not UTF-8 text.*iconv -f GBK"),
    ("unknown.jsonl", '{"prompt": "a", "completion": "b"}\n', r"unknown.jsonl, line 1: unknown format with keys \['completion', 'prompt'\]"),
    ("mixed.jsonl", '{"conversation": [{"input": "a", "output": "b"}]}\n{"messages": []}\n',
     r"mixed.jsonl, line 2: format differs from the first record"),
    ("data.txt", "hello", r"data.txt: unsupported file type '.txt'"),
    ("empty.jsonl", "\n\n", r"empty.jsonl is empty"),
    ("scalar.json", "42", r"scalar.json: expected a non-empty JSON array of objects"),
]


@pytest.mark.parametrize("name, content, message", BAD_RECORD_FILES, ids=[b[0] for b in BAD_RECORD_FILES])
def test_bad_record_files_name_file_and_line(tmp_path, name, content, message):
    path = _bad_file(tmp_path, name, content)
    with pytest.raises(formats.DataFormatError, match=message):
        formats.load_records(path)


NO_OUTPUT = [
    ("conversation", {"conversation": [{"input": "q"}]}, r"line 2: conversation.0.output: Field required"),
    ("conversation", {"conversation": [{"input": "q", "output": "  "}]}, r"line 2: conversation.0.output: .*'output' is empty"),
    ("openai", {"messages": [{"role": "user", "content": "q"}]}, r"line 2: the last message is not from the assistant"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "q"}]}, r"line 2: the last message is not from the assistant"),
    ("alpaca", {"instruction": "q", "input": ""}, r"line 2: 'output' is missing or empty"),
]


@pytest.mark.parametrize("fmt, bad, message", NO_OUTPUT, ids=[f"{n[0]}-{i}" for i, n in enumerate(NO_OUTPUT)])
def test_convert_file_rejects_a_turn_without_output_and_writes_nothing(tmp_path, fmt, bad, message):
    good = formats.from_conversation({"conversation": [{"input": "q", "output": "a"}]}, fmt)
    source = _bad_file(tmp_path, "in.jsonl", json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    dest = tmp_path / "out.jsonl"
    with pytest.raises(formats.DataFormatError, match=message):
        formats.convert_file(source, dest)
    assert not dest.exists()


@pytest.mark.parametrize("name", ["openai_messages.json", "alpaca.json", "sharegpt.jsonl", "math_qa.jsonl"])
def test_convert_file_writes_conversation_jsonl(tmp_path, name):
    out = formats.convert_file(DATASETS_DIR / name, tmp_path / "out.jsonl")
    assert validation.validate_file(out, None) == "conversation"
    assert len(formats.read_jsonl(out)) == len(formats.load_records(DATASETS_DIR / name).records)


def test_convert_file_refuses_to_overwrite(tmp_path):
    dest = tmp_path / "out.jsonl"
    dest.write_text("precious\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        formats.convert_file(DATASETS_DIR / "sharegpt.jsonl", dest)
    assert dest.read_text(encoding="utf-8") == "precious\n"
    formats.convert_file(DATASETS_DIR / "sharegpt.jsonl", dest, overwrite=True)
    assert validation.validate_file(dest) == "conversation"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- tables: bad sheets --------------------------------------------------------------------------------

def test_missing_columns_lists_the_columns_it_has(tmp_path):
    path = write_xlsx(tmp_path / "qa.xlsx", [["Question", "Reply"], ["q", "a"]])
    table = formats.read_table(path)
    with pytest.raises(formats.DataFormatError, match=r"no column\(s\) \['问题', '回答'\].*columns are \['Question', 'Reply'\]"):
        formats.table_to_conversation(table, "问题", "回答", source=str(path))


@pytest.mark.parametrize("rows, message", [
    ([], "is empty"),
    ([[None, None], [None, None]], "is empty"),
    ([["问题", "回答"]], r"has a header \(row 1\) but no data rows"),
])
def test_empty_sheets(tmp_path, rows, message):
    path = write_xlsx(tmp_path / "empty.xlsx", rows)
    with pytest.raises(formats.DataFormatError, match=message) as err:
        formats.read_table(path)
    assert "empty.xlsx" in str(err.value)


def test_unknown_sheet_lists_sheets(tmp_path):
    path = write_xlsx(tmp_path / "qa.xlsx", [["问题", "回答"], ["q", "a"]], sheet="data")
    with pytest.raises(formats.DataFormatError, match=r"no sheet named 'Sheet9'; the workbook has sheets \['data'\]"):
        formats.read_table(path, "Sheet9")


def test_sheet_number_out_of_range_and_not_a_workbook(tmp_path):
    path = write_xlsx(tmp_path / "qa.xlsx", [["问题", "回答"], ["q", "a"]], sheet="data")
    assert formats.read_table(path, 0).loc[2, "回答"] == "a"
    with pytest.raises(formats.DataFormatError, match=r"no sheet number 2; the workbook has sheets \['data'\]"):
        formats.read_table(path, 2)
    fake = _bad_file(tmp_path, "fake.xlsx", "问题,回答\nq,a\n")
    with pytest.raises(formats.DataFormatError, match=r"fake.xlsx is not a readable .xlsx workbook.*save it again as .xlsx"):
        formats.read_table(fake)


def test_sheet_with_only_empty_answers_is_an_error(tmp_path):
    path = write_xlsx(tmp_path / "qa.xlsx", [["问题", "回答"], ["q1", None], ["q2", "  "]])
    with pytest.raises(formats.DataFormatError, match="no row has both"):
        formats.table_to_conversation(formats.read_table(path), "问题", "回答", source=str(path))


@pytest.mark.parametrize("value, text", [
    (None, ""), (3, "3"), (3.0, "3"), (2.5, "2.5"), (True, "TRUE"),
    (dt.datetime(2025, 10, 31), "2025-10-31"), (dt.datetime(2025, 10, 31, 9, 30), "2025-10-31 09:30:00"),
    (dt.date(2025, 1, 2), "2025-01-02"), ("  keep  ", "  keep  "),
])
def test_cell_text(value, text):
    assert formats._cell_text(value) == text


def test_table_types_and_unsupported_table(tmp_path):
    path = write_xlsx(tmp_path / "qa.xlsx", [["问题", "回答"], [12, dt.datetime(2024, 2, 29)], ["x", 0.1]])
    table = formats.read_table(path)
    assert table.loc[2].tolist() == ["12", "2024-02-29"] and table.loc[3, "回答"] == "0.1"
    with pytest.raises(formats.DataFormatError, match=r"unsupported table type '.ods'"):
        formats.read_table(_bad_file(tmp_path, "x.ods", "x"))
    with pytest.raises(formats.DataFormatError, match="does not exist"):
        formats.read_table(tmp_path / "nope.xlsx")


# --- learners' real files: title rows above the header, CSV saved by Excel on Chinese Windows ---------------

TITLED = [["2025 年职业咨询问答汇总", None, None], [None, None, None], ["编号", "问题", "回答"],
          [1, "怎么写简历？", "一页，突出成果。"], [2, "面试穿什么？", None], [3, "要不要跳槽？", "先想清楚目标。"]]


def test_header_below_a_title_row_is_found_and_rows_keep_excel_numbers(tmp_path):
    path = write_xlsx(tmp_path / "titled.xlsx", TITLED)
    table = formats.read_table(path, columns=["问题", "回答"])
    assert list(table.columns) == ["编号", "问题", "回答"] and list(table.index) == [4, 5, 6]
    assert table.attrs["header_row"] == 3 and table.loc[6, "回答"] == "先想清楚目标。"
    records, report = formats.table_to_conversation(table, "问题", "回答", source=str(path))
    assert report.empty == {5: ["回答"]} and report.kept_rows == [4, 6] and len(records) == 2
    assert list(formats.read_table(path, header_row=3).index) == [4, 5, 6]


@pytest.mark.parametrize("kwargs, message", [
    ({"columns": ["Question", "回答"]}, r"no row holds all of the columns \['Question', '回答'\]; the first rows are "
                                       r"\[\"row 1: \['2025 年职业咨询问答汇总'\]\", \"row 3: \['编号', '问题', '回答'\]\""),
    ({"header_row": 2}, r"row 2 \(header_row\) is empty"),
    ({"header_row": 9}, r"row 9 \(header_row\) is empty or past the last row \(6\)"),
])
def test_header_that_cannot_be_found_is_explained(tmp_path, kwargs, message):
    path = write_xlsx(tmp_path / "titled.xlsx", TITLED)
    with pytest.raises(formats.DataFormatError, match=message) as err:
        formats.read_table(path, **kwargs)
    assert "titled.xlsx" in str(err.value)


def test_missing_column_names_the_header_row(tmp_path):
    table = formats.read_table(write_xlsx(tmp_path / "titled.xlsx", TITLED), header_row=3)
    with pytest.raises(formats.DataFormatError, match=r"no column\(s\) \['答案'\] in row 3 \(the header row\)"):
        formats.table_to_conversation(table, "问题", "答案")


@pytest.mark.parametrize("encoding, detected", [("gbk", "gb18030"), ("gb18030", "gb18030"), ("utf-8", "utf-8-sig"),
                                                ("utf-8-sig", "utf-8-sig")])
def test_csv_in_gbk_or_utf8_is_read_and_the_encoding_reported(tmp_path, encoding, detected):
    text = "问题,回答\r\n你好,再见\r\n“引号”里的字,〇㐀\r\n"  # gb18030-only characters too (〇 is GBK, 㐀 is not)
    if encoding == "gbk":
        text = text.replace("㐀", "好")
    path = _bad_file(tmp_path, "sheet.csv", text.encode(encoding))
    table = formats.read_table(path, columns=["问题", "回答"])
    assert table.attrs["encoding"] == detected and table.loc[2, "回答"] == "再见"
    assert table.loc[3].tolist() == ["“引号”里的字", "〇好" if encoding == "gbk" else "〇㐀"]


def test_damaged_gbk_csv_is_refused_at_the_damaged_line(tmp_path):
    raw = "问题,回答\n你好,再见\n".encode("gbk") + b"q,\x81\x20\n"  # a GBK lead byte without its second byte
    with pytest.raises(formats.DataFormatError, match=r"damaged.csv, line 3: not UTF-8 or GBK/GB18030 text \(byte 0x81"):
        formats.read_table(_bad_file(tmp_path, "damaged.csv", raw))


def test_csv_that_no_encoding_explains_is_refused_with_its_line(tmp_path):
    path = _bad_file(tmp_path, "broken.csv", "问题,回答\n你好,再见\n".encode("utf-8") + b"q,\xff\xfe\n")
    with pytest.raises(formats.DataFormatError, match=r"broken.csv, line 3: not UTF-8 or GBK/GB18030 text \(byte 0xff"):
        formats.read_table(path)


def test_jsonl_keeps_unicode_line_separators(tmp_path):
    record = {"conversation": [{"input": "a\u2028b", "output": "c\u0085d"}]}
    path = formats.write_jsonl([record], tmp_path / "u.jsonl")
    assert formats.load_records(path).records == [record]
