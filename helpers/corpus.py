"""Raw domain text for continued pre-training: read .txt/.md files, cut them into chunks, write XTuner's records (09_pretrain).

XTuner's pre-training format is one ``{"conversation": [{"input": "", "output": TEXT}]}`` per document or chunk:
no question, every token of the text is learned (no ``-100`` labels).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import formats, validation
from .formats import DataFormatError

TEXT_SUFFIXES = (".txt", ".md")
TEXT_ENCODINGS = ("utf-8-sig", "gb18030")  # Notepad on older Chinese Windows saves "ANSI", which is GBK
SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|(?<=\.\s)")  # zero-width: splitting loses no character
COMMAS = ("，", "、", "：", ",", ":")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s")


@dataclass
class Chunk:
    """One training record's text, where it came from and how many tokens it is (end-of-text token included)."""

    source: str
    text: str
    tokens: int


def text_files(paths) -> list[Path]:
    """The ``.txt``/``.md`` files named by ``paths`` (files, or folders read in name order) (09_pretrain)."""
    found = []
    for path in [Path(p).expanduser() for p in ([paths] if isinstance(paths, (str, Path)) else paths)]:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in TEXT_SUFFIXES and p.is_file())
            if not inside:
                raise DataFormatError(f"{path} holds no .txt or .md file. Put your text files there, or name the files.")
            found += inside
        elif path.suffix.lower() not in TEXT_SUFFIXES:
            raise DataFormatError(f"{path}: unsupported file type {path.suffix!r}. Continued pre-training reads plain "
                                  "text: save it as .txt (UTF-8) or .md; convert Word/PDF first (e.g. WPS 'save as "
                                  "plain text', pdftotext).")
        else:
            found.append(formats._require_file(path))
    return found


def read_text(path: Path) -> str:
    """A text file's content (UTF-8 or GBK); binary, undecodable or empty files are refused with the fix (09_pretrain)."""
    path = formats._require_file(Path(path))
    head = path.read_bytes()[:8192]
    if b"\x00" in head:
        raise DataFormatError(f"{path}: this is a binary file (it contains NUL bytes at offset {head.index(0)}), "
                              "not plain text. Export it as plain text (.txt, UTF-8) first.")
    text, _ = formats._decode(path, TEXT_ENCODINGS, advice="so it is not plain text, or the file is damaged. "
                              "Open it in an editor and save it again as 'UTF-8' text.")
    if not text.strip():
        raise DataFormatError(f"{path} is empty (no text to learn from). Write text into it or leave it out.")
    return text


def paragraphs(text: str) -> list[str]:
    """Paragraphs separated by blank lines; Markdown heading lines are dropped, lines inside a paragraph joined (09_pretrain)."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    out = []
    for block in blocks:
        lines = [line.strip() for line in block.split("\n") if line.strip() and not HEADING.match(line)]
        if lines:
            out.append("".join(lines) if _mostly_cjk(lines) else " ".join(lines))
    return out


def _mostly_cjk(lines: list[str]) -> bool:
    """Chinese lines join without a space; other lines with one."""
    text = "".join(lines)
    return sum("\u4e00" <= ch <= "\u9fff" for ch in text) * 2 > len(text)


def _count(tokenizer, text: str) -> int:
    return validation._count_tokens(tokenizer, [text])[0]


def _split_long(tokenizer, text: str, budget: int) -> list[str]:
    """Pieces of ``text`` of at most ``budget`` tokens: at sentence ends where possible, else after a comma, else at a
    token boundary."""
    pieces, current = [], ""
    for sentence in [s for s in SENTENCE_END.split(text) if s]:
        if current and _count(tokenizer, current + sentence) > budget:
            pieces.append(current)
            current = ""
        current += sentence
        while _count(tokenizer, current) > budget:  # one sentence longer than the budget: cut it
            cut = _cut_point(tokenizer, current, budget)
            pieces.append(current[:cut])
            current = current[cut:]
    return pieces + ([current] if current else [])


def _cut_point(tokenizer, text: str, budget: int) -> int:
    """Where to cut ``text`` so the first part is at most ``budget`` tokens: after its last comma, else before the
    first token that does not fit (earlier if re-tokenising the part still gives too many)."""
    starts = [start for start, _ in tokenizer(text, add_special_tokens=False,
                                              return_offsets_mapping=True)["offset_mapping"]]
    cut = starts[budget]
    comma = max(text.rfind(mark, 0, cut) for mark in COMMAS)
    cut = comma + 1 if comma > 0 else cut
    while cut > 1 and _count(tokenizer, text[:cut]) > budget:
        cut -= 1
    return max(cut, 1)


def _chunk_paragraphs(paras: list[str], tokenizer, max_tokens: int, source: str = "") -> list[Chunk]:
    """Paragraphs packed greedily into chunks of at most ``max_tokens`` tokens with the end-of-text token; a paragraph
    longer than that is cut at sentence ends (used by chunk_files)."""
    budget = max_tokens - 1  # room for the end-of-text token XTuner appends to each record
    if budget < 1:
        raise ValueError(f"max_tokens must be at least 2, got {max_tokens}.")
    chunks, current = [], ""
    for para in paras:
        for k, piece in enumerate(_split_long(tokenizer, para, budget)):
            joined = (current + ("\n" if k == 0 else "") + piece) if current else piece  # paragraphs on their own lines
            if current and _count(tokenizer, joined) > budget:
                chunks.append(current)
                joined = piece
            current = joined
    chunks += [current] if current else []
    return [Chunk(source, text, n + 1) for text, n in zip(chunks, validation._count_tokens(tokenizer, chunks))]


def chunk_files(paths, tokenizer, max_tokens: int) -> list[Chunk]:
    """Every file's paragraphs cut into chunks of at most ``max_tokens`` tokens; chunks never span two files (09_pretrain)."""
    return [chunk for path in text_files(paths)
            for chunk in _chunk_paragraphs(paragraphs(read_text(path)), tokenizer, max_tokens, source=path.name)]


def pretrain_record(text: str) -> dict:
    """One record of XTuner's pre-training format: no input, the whole text as output (09_pretrain)."""
    return {"conversation": [{"input": "", "output": text}]}


def write_pretrain_data(chunks: list[Chunk], dest: Path, overwrite: bool = False) -> Path:
    """The chunks as pre-training JSONL, written atomically (09_pretrain)."""
    return formats.write_jsonl([pretrain_record(c.text) for c in chunks], dest, overwrite=overwrite)


def packed_blocks(chunks: list[Chunk], max_length: int) -> dict:
    """What XTuner makes of the chunks with ``pack_to_max_length=True``: each record cut to ``max_length`` tokens, all
    joined and cut into blocks of ``max_length``; the tokens left over after the last whole block are dropped
    (``Packer`` keeps a short block only when there is less than one block in all) (09_pretrain)."""
    total = sum(min(c.tokens, max_length) for c in chunks)
    blocks, rest = divmod(total, max_length)
    return {"chunks": len(chunks), "tokens": total, "max_length": max_length, "blocks": max(blocks, 1),
            "dropped_tokens": rest if blocks else 0, "truncated_tokens": sum(max(c.tokens - max_length, 0) for c in chunks)}
