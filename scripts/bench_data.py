"""Benchmark the data toolkit of notebook 02 on N synthetic conversations (not a test).

Usage: .venv/bin/python scripts/bench_data.py [--rows 100000] [--no-tokenizer]

Builds N ShareGPT records (a third multi-turn), writes them as JSONL, then times:
read + convert to ``conversation`` + write JSONL, and the validation report (schema in one pydantic pass,
role order, duplicates); then, separately, the token-length pass with the tiny model's fast tokenizer (batch API).
Prints seconds, rows per second and the process's peak RSS (resource.getrusage) after each stage.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path

from helpers import formats, models, validation

WORDS = "简历 面试 offer 实习 薪资 跳槽 转行 规划 项目 经历 resume interview salary career skills".split()


def build_sharegpt(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct ShareGPT records; every third one has three turns."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        turns = 3 if i % 3 == 0 else 1
        messages = [{"from": "system", "value": "你是一位职业规划顾问。"}]
        for t in range(turns):
            question = f"问题 {i}.{t}：" + " ".join(rng.choices(WORDS, k=8))
            answer = "回答：" + " ".join(rng.choices(WORDS, k=30))
            messages += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        records.append({"conversations": messages})
    return records


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, rows: int, fn):
    """Run ``fn``; print seconds, rows/s and the process's peak RSS so far (tracemalloc would slow it 2-5x)."""
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<48} {seconds:7.2f} s {rows / seconds:10,.0f} rows/s   peak RSS {peak_rss_mib():6.0f} MiB")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--no-tokenizer", action="store_true", help="skip the token-length pass")
    args = parser.parse_args()
    n = args.rows
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        tmp = Path(tmp)
        source = tmp / "sharegpt.jsonl"
        source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in build_sharegpt(n)), encoding="utf-8")
        print(f"{n:,} ShareGPT conversations, {source.stat().st_size / 2**20:.1f} MiB of JSONL\n")

        out, convert_s = timed("read + convert + write conversation JSONL", n,
                               lambda: formats.convert_file(source, tmp / "conversation.jsonl"))
        report, validate_s = timed("validation report of the converted file", n, lambda: validation.validate(out))
        assert not report.problems and report.records == n, report.problems[:3]
        print(f"{'= conversion + validation':<48} {convert_s + validate_s:7.2f} s "
              f"{n / (convert_s + validate_s):10,.0f} rows/s   (target: under 10 s)")
        timed("validation report of the sharegpt source", n, lambda: validation.validate(source))

        if not args.no_tokenizer:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(models.build_tiny_model(tmp / models.TINY_DIR))
            records = formats.read_jsonl(out)
            validation.token_lengths(records[:10], tokenizer, "qwen_chat")  # import xtuner outside the timing
            lengths, fast_s = timed("token lengths (fast tokenizer, batch API)", n,
                                    lambda: validation.token_lengths(records, tokenizer, "qwen_chat"))
            print(f"\n{sum(lengths):,} tokens, {sum(lengths) / fast_s:,.0f} tokens/s; mean {sum(lengths) / n:.0f} per conversation")
    print(f"peak RSS of this process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
