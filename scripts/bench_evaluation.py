"""How fast notebook 07's evaluation runs on this machine (not a test).

Prints, in one run on the cpu profile's model (SmolLM2-135M-Instruct):
- greedy generation of the general-knowledge probe: answer tokens/s batched (one batch of --batch prompts) and one
  prompt at a time, for the same prompts, and the ratio; answer tokens are counted after the stop word, so a batch
  is not credited for the padding rows it keeps generating;
- the C-Eval format sample (datasets/ceval_format_sample): questions/s of ``evaluation.score_benchmark``.

Usage: .venv/bin/python scripts/bench_evaluation.py [--model DIR] [--batch 16] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from helpers import chat, evaluation, models, profiles


def timed(fn):
    """``fn()`` and the seconds it took."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def answer_tokens(model: chat.ChatModel, answers: list[str]) -> int:
    return sum(len(model.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a HF model folder (default: unpack the cpu profile's SmolLM2)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    import torch

    path = Path(args.model) if args.model else models.prepare_base_model(profiles.get_profile("cpu"), Path(tempfile.mkdtemp()))
    model = chat.load_chat_model(path)
    print(f"# Evaluation benchmark: {path.name}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    questions = [item["question"] for item in evaluation.load_probe()][: args.batch]
    batched, batched_s = timed(lambda: chat.generate_answers(model, questions, "qwen_chat", max_new_tokens=args.max_new_tokens,
                                                             batch_size=len(questions)))
    single, single_s = timed(lambda: chat.generate_answers(model, questions, "qwen_chat", max_new_tokens=args.max_new_tokens,
                                                           batch_size=1))
    rate_batched = answer_tokens(model, batched) / batched_s
    rate_single = answer_tokens(model, single) / single_s
    print(f"generation, {len(questions)} probe prompts, max_new_tokens={args.max_new_tokens}")
    print(f"  batch of {len(questions):<3} {batched_s:7.1f} s  {rate_batched:7.1f} answer tokens/s")
    print(f"  one by one   {single_s:7.1f} s  {rate_single:7.1f} answer tokens/s")
    print(f"  batched / one by one: {rate_batched / rate_single:.2f}x   (same answers: {batched == single})")
    sample = evaluation.load_benchmark(evaluation.CEVAL_SAMPLE_DIR)
    for template in (None, "qwen_chat"):
        results, seconds = timed(lambda: evaluation.score_benchmark(model, sample, template_name=template))
        accuracy = sum(r["correct"] for r in results) / len(results)
        print(f"multiple choice, {len(sample)} questions, template {template}: {seconds:5.1f} s, "
              f"{len(sample) / seconds:5.1f} questions/s, accuracy {accuracy:.2f} (chance 0.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
