"""helpers.corpus: domain text files to XTuner's pre-training records, and the validator's pre-training mode."""

import json
from pathlib import Path

import pytest

from helpers import corpus, validation
from helpers.formats import DataFormatError

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "datasets" / "qingshi_town"
HELDOUT = REPO / "datasets" / "qingshi_town_heldout.md"


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def count(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# --- reading text files ---------------------------------------------------------------------------

def test_the_shipped_corpus_reads_as_paragraphs_without_headings():
    names = [p.name for p in corpus.text_files(SHIPPED)]
    assert names == sorted(names) and len(names) == 4
    for path in corpus.text_files(SHIPPED):
        paras = corpus.paragraphs(corpus.read_text(path))
        assert len(paras) >= 5 and all("青石镇" in p or "镇上" in p for p in paras), path
        assert not any(p.startswith("#") for p in paras)
    held = corpus.paragraphs(corpus.read_text(HELDOUT))
    training = {p for path in corpus.text_files(SHIPPED) for p in corpus.paragraphs(corpus.read_text(path))}
    assert len(held) == 6 and not set(held) & training  # held out: none of its paragraphs is trained on


def test_paragraphs_join_lines_and_split_at_blank_lines():
    text = "# 标题\n第一段第一行，\n第一段第二行。\n\n  \nSecond paragraph,\nsecond line.\r\n\r\n## 小标题\n最后一段。"
    assert corpus.paragraphs(text) == ["第一段第一行，第一段第二行。", "Second paragraph, second line.", "最后一段。"]


def test_gbk_text_is_read(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes("青石镇的桂花糕。".encode("gbk"))
    assert corpus.read_text(path) == "青石镇的桂花糕。"


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", b"  \n\n", r"empty\.txt is empty .*Write text into it"),
    ("scan.txt", b"%PDF-1.7\x00\x01\x02", r"scan\.txt: this is a binary file .*offset 8.*plain text"),
    ("bad.md", "第一行\n".encode() + b"\xff\xfe\xff\n", r"bad\.md, line 2: not UTF-8 or GBK/GB18030 text.*save it again"),
])
def test_bad_text_files_are_refused_with_the_file_and_the_fix(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        corpus.read_text(path)


def test_text_files_refuses_other_types_missing_files_and_empty_folders(tmp_path):
    (tmp_path / "report.docx").write_bytes(b"PK")
    with pytest.raises(DataFormatError, match=r"report\.docx: unsupported file type '\.docx'.*\.txt"):
        corpus.text_files([tmp_path / "report.docx"])
    with pytest.raises(DataFormatError, match=r"missing\.txt does not exist"):
        corpus.text_files(tmp_path / "missing.txt")
    with pytest.raises(DataFormatError, match="holds no .txt or .md file"):
        corpus.text_files(tmp_path)
    (tmp_path / "a.md").write_text("一段。", encoding="utf-8")
    assert corpus.text_files([tmp_path, tmp_path / "a.md"]) == [tmp_path / "a.md"] * 2


# --- chunking -------------------------------------------------------------------------------------

def test_chunks_fit_max_length_and_keep_every_character(tokenizer):
    paras = [p for path in corpus.text_files(SHIPPED) for p in corpus.paragraphs(corpus.read_text(path))]
    chunks = corpus._chunk_paragraphs(paras, tokenizer, 64)
    assert len(chunks) > 5 and all(c.tokens <= 64 for c in chunks)
    assert all(c.tokens == count(tokenizer, c.text) + 1 for c in chunks)  # + the end-of-text token
    assert "".join(c.text for c in chunks).replace("\n", "") == "".join(paras)  # nothing lost or reordered
    assert sum(c.text.count("\n") for c in chunks) < len(paras)  # paragraphs within a chunk: one per line


def test_a_long_paragraph_is_cut_at_sentence_ends_and_a_long_sentence_by_tokens(tokenizer):
    sentences = [f"第{i}句话讲青石镇的一件事。" for i in range(30)]
    chunks = corpus._chunk_paragraphs(["".join(sentences)], tokenizer, 40)
    assert len(chunks) > 2 and all(c.tokens <= 40 for c in chunks)
    assert all(c.text.endswith("。") for c in chunks)  # cut where a sentence ends
    assert "".join(c.text for c in chunks) == "".join(sentences)
    run_on = "桂花" * 100  # no sentence end at all
    pieces = corpus._chunk_paragraphs([run_on], tokenizer, 16)
    assert all(c.tokens <= 16 for c in pieces) and "".join(c.text for c in pieces) == run_on


def test_cutting_english_keeps_the_spaces_between_sentences(tokenizer):
    text = " ".join(f"Sentence number {i} is about the old town." for i in range(12))
    chunks = corpus._chunk_paragraphs([text], tokenizer, 48)
    assert len(chunks) > 1 and "".join(c.text for c in chunks) == text


def test_chunk_files_never_spans_two_files(tokenizer):
    chunks = corpus.chunk_files(SHIPPED, tokenizer, 10_000)
    assert [c.source for c in chunks] == [p.name for p in corpus.text_files(SHIPPED)]


def test_packed_blocks_counts_what_xtuner_keeps_and_drops():
    chunks = [corpus.Chunk("a", "x", 100), corpus.Chunk("a", "y", 250), corpus.Chunk("b", "z", 300)]
    # each record is cut to 256 first (300 -> 256, 44 lost), then 100 + 250 + 256 = 606 = 2 blocks + 94 dropped
    assert corpus.packed_blocks(chunks, 256) == {"chunks": 3, "tokens": 606, "max_length": 256, "blocks": 2,
                                                 "dropped_tokens": 94, "truncated_tokens": 44}
    assert corpus.packed_blocks(chunks[:1], 256)["blocks"] == 1  # less than one block: Packer keeps it short
    assert corpus.packed_blocks(chunks[:1], 256)["dropped_tokens"] == 0


# --- writing and validating -----------------------------------------------------------------------

def test_written_records_pass_the_pretraining_validator_and_not_the_sft_one(tmp_path, tokenizer):
    chunks = corpus.chunk_files(SHIPPED, tokenizer, 128)
    path = corpus.write_pretrain_data(chunks, tmp_path / "pretrain.jsonl")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records[0] == {"conversation": [{"input": "", "output": chunks[0].text}]}
    report = validation.validate(path, None, tokenizer=tokenizer, max_length=128, kind="pretrain")
    assert report.ok and report.records == len(chunks)
    assert report.token_counts == [c.tokens for c in chunks]  # the validator counts as XTuner encodes, no template
    sft = validation.validate(path, None)
    assert len(sft.problems) == len(chunks) and sft.problems[0].where == "line 1" and "input" in sft.problems[0].problem
    with pytest.raises(FileExistsError):
        corpus.write_pretrain_data(chunks, path)


def test_the_pretraining_validator_names_the_line_of_a_question_or_an_empty_text(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [corpus.pretrain_record("正文。"), {"conversation": [{"input": "问题", "output": "回答"}]},
            {"conversation": [{"input": "", "output": "  "}]},
            {"conversation": [{"input": "", "output": "一"}, {"input": "", "output": "二"}]}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = validation.validate(path, None, kind="pretrain")
    assert [p.where for p in report.problems] == ["line 2", "line 3", "line 4"]
    assert all("corpus.pretrain_record" in p.fix for p in report.problems)
    with pytest.raises(DataFormatError, match=r"mixed\.jsonl, line 2: conversation\.0\.input"):
        validation.validate(path, None, kind="pretrain", strict=True)
