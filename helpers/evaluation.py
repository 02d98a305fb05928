"""Evaluating a chat model: ROUGE-L that sees Chinese, C-Eval style multiple choice, a general-knowledge probe, OpenCompass."""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import files
from .chat import ChatModel, build_prompt, generate_answers
from .workspace import DATASETS_DIR

LETTERS = ("A", "B", "C", "D")
CEVAL_COLUMNS = ("id", "question", *LETTERS, "answer")
CEVAL_SPLITS = ("val", "dev", "test")
# C-Eval's subjects as its zero-shot prompt names them ("以下是中国关于{name}考试的单项选择题…").
CEVAL_SUBJECTS_ZH = {
    "computer_network": "计算机网络", "operating_system": "操作系统", "computer_architecture": "计算机组成",
    "college_programming": "大学编程", "college_physics": "大学物理", "college_chemistry": "大学化学",
    "advanced_mathematics": "高等数学", "probability_and_statistics": "概率统计", "discrete_mathematics": "离散数学",
    "electrical_engineer": "注册电气工程师", "metrology_engineer": "注册计量师", "high_school_mathematics": "高中数学",
    "high_school_physics": "高中物理", "high_school_chemistry": "高中化学", "high_school_biology": "高中生物",
    "middle_school_mathematics": "初中数学", "middle_school_biology": "初中生物", "middle_school_physics": "初中物理",
    "middle_school_chemistry": "初中化学", "veterinary_medicine": "兽医学", "college_economics": "大学经济学",
    "business_administration": "工商管理", "marxism": "马克思主义基本原理",
    "mao_zedong_thought": "毛泽东思想和中国特色社会主义理论体系概论", "education_science": "教育学",
    "teacher_qualification": "教师资格", "high_school_politics": "高中政治", "high_school_geography": "高中地理",
    "middle_school_politics": "初中政治", "middle_school_geography": "初中地理", "modern_chinese_history": "近代史纲要",
    "ideological_and_moral_cultivation": "思想道德修养与法律基础", "logic": "逻辑学", "law": "法学",
    "chinese_language_and_literature": "中国语言文学", "art_studies": "艺术学", "professional_tour_guide": "导游资格",
    "legal_professional": "法律职业资格", "high_school_chinese": "高中语文", "high_school_history": "高中历史",
    "middle_school_history": "初中历史", "civil_servant": "公务员", "sports_science": "体育学",
    "plant_protection": "植物保护", "basic_medicine": "基础医学", "clinical_medicine": "临床医学",
    "urban_and_rural_planner": "注册城乡规划师", "accountant": "注册会计师", "fire_engineer": "注册消防工程师",
    "environmental_impact_assessment_engineer": "环境影响评价工程师", "tax_accountant": "税务师", "physician": "医师资格",
}
CEVAL_SAMPLE_DIR = DATASETS_DIR / "ceval_format_sample"
PROBE_FILE = DATASETS_DIR / "general_probe.json"


class BenchmarkFormatError(ValueError):
    """Raised for a benchmark file the course cannot score; the message names file, line and fix."""


# --- ROUGE-L ----------------------------------------------------------------------------------

# One token per CJK character (ideographs, kana, hangul); other letters and digits in lowercased runs.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


class CJKTokenizer:
    """A rouge-score tokenizer that keeps Chinese: each CJK character a token, Latin and digit runs lowercased words."""

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text``."""
        return _TOKEN.findall(text.lower())


def rouge_l(prediction: str, references: str | list[str]) -> float:
    """ROUGE-L F-measure of ``prediction``, the best over ``references``, with Chinese split by character (07_evaluate)."""
    from rouge_score import rouge_scorer

    references = [references] if isinstance(references, str) else list(references)
    if not references:
        raise ValueError("rouge_l needs at least one reference answer.")
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=CJKTokenizer())
    return max(scorer.score(ref, prediction)["rougeL"].fmeasure for ref in references)


def score_answer(answer: str, references: list[str], keywords: list[str]) -> dict:
    """Exact match, keyword containment (case-insensitive) and ROUGE-L of one answer (07_evaluate)."""
    lowered = answer.lower()
    return {"exact": any(answer.strip() == ref.strip() for ref in references),
            "contains": all(k.lower() in lowered for k in keywords),
            "rouge_l": rouge_l(answer, references)}


# --- C-Eval format multiple choice --------------------------------------------------------------

@dataclass
class MCQuestion:
    """One single-choice question (options A-D), with where it came from (``file:line``)."""

    subject: str
    id: str
    question: str
    options: dict[str, str]
    answer: str
    source: str


def _split_name(path: Path) -> tuple[str, str | None]:
    """(subject, split) from a C-Eval file name such as ``computer_network_val.csv``."""
    for split in CEVAL_SPLITS:
        if path.stem.endswith(f"_{split}"):
            return path.stem[: -len(split) - 1], split
    return path.stem, None


def _csv_text(path: Path) -> str:
    """The text of a UTF-8 CSV (BOM or not); other encodings are an error naming the line."""
    if not path.is_file():
        raise BenchmarkFormatError(f"{path} does not exist. Check the path (relative paths start at the notebooks/ "
                                   "folder), or point at a folder of C-Eval CSVs such as val/.")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BenchmarkFormatError(f"{path}, line {line}: not UTF-8 text (probably GBK). Save the file as UTF-8 "
                                   "(Excel: 'CSV UTF-8'), or convert it: iconv -f GBK -t UTF-8 IN > OUT.") from None


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank data rows of a CSV, each row with the line it starts on (header = line 1)."""
    reader = csv.reader(io.StringIO(_csv_text(path), newline=""), strict=True)
    rows, start = [], 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise BenchmarkFormatError(f"{path}, line {start}: not valid CSV ({exc}). A cell that starts with a double "
                                   'quote must end with one, and a quote inside it is written twice ("").') from None
    if not rows:
        raise BenchmarkFormatError(f"{path} is empty. A C-Eval CSV starts with the header "
                                   f"{','.join(CEVAL_COLUMNS)} followed by one question per row.")
    (_, header), data = rows[0], rows[1:]
    return [cell.strip() for cell in header], data


def _check_header(path: Path, header: list[str], split: str | None) -> None:
    """Refuse a header without the C-Eval columns, and the test split (it has no answers)."""
    missing = [c for c in CEVAL_COLUMNS[1:] if c not in header]
    answers_missing = missing == ["answer"]
    if split == "test" and answers_missing:
        _refuse_test_split(path)
    if missing:
        raise BenchmarkFormatError(f"{path}: missing column(s) {', '.join(missing)}. A C-Eval CSV has the header "
                                   f"{','.join(CEVAL_COLUMNS)} (dev files add explanation); this one has {','.join(header)}.")


def _refuse_test_split(path: Path) -> None:
    subject, _ = _split_name(path)
    raise BenchmarkFormatError(f"{path}: C-Eval's test split has no answers (they are kept for the leaderboard), so it "
                               f"cannot be scored here. Use the val split ({subject}_val.csv) or dev ({subject}_dev.csv).")


def _question_from_row(path: Path, subject: str, header: list[str], line: int, row: list[str]) -> MCQuestion:
    """One data row as an ``MCQuestion``; a wrong cell count, an empty cell or an answer outside A-D is an error."""
    where = f"{path}, line {line}"
    if len(row) != len(header):
        raise BenchmarkFormatError(f"{where}: {len(row)} cells, but the header has {len(header)}. A cell that "
                                   "contains a comma or a line break must be in double quotes.")
    cells = {name: value.strip() for name, value in zip(header, row)}
    for name in ("question", *LETTERS):
        if not cells[name]:
            raise BenchmarkFormatError(f"{where}: the '{name}' cell is empty. Fill it in or delete the row.")
    answer = cells["answer"].upper()
    if answer not in LETTERS:
        raise BenchmarkFormatError(f"{where}: answer {cells['answer']!r} is not one of A, B, C, D. "
                                   "Write the letter of the correct option.")
    return MCQuestion(subject, cells.get("id") or str(line - 1), cells["question"],
                      {k: cells[k] for k in LETTERS}, answer, f"{path.name}:{line}")


def _read_ceval_csv(path: Path, subject: str | None = None) -> list[MCQuestion]:
    """The questions of one C-Eval CSV (``id,question,A,B,C,D,answer[,explanation]``), checked row by row."""
    path = Path(path)
    name, split = _split_name(path)
    header, rows = _csv_rows(path)
    _check_header(path, header, split)
    if not rows:
        raise BenchmarkFormatError(f"{path} has a header but no questions. Add one question per row.")
    if split == "test" and not any(row[header.index("answer")].strip() for _, row in rows
                                   if len(row) == len(header)):
        _refuse_test_split(path)
    return [_question_from_row(path, subject or name, header, line, row) for line, row in rows]


def load_benchmark(path: Path) -> list[MCQuestion]:
    """All questions of a C-Eval CSV, or of every ``*.csv`` in a folder (sorted by name) (07_evaluate)."""
    path = Path(path)
    if not path.is_dir():
        return _read_ceval_csv(path)
    csvs = sorted(path.glob("*.csv"))
    if not csvs:
        raise BenchmarkFormatError(f"{path} holds no .csv files. Point at a C-Eval split folder such as val/ "
                                   "(files named {subject}_val.csv), or at one CSV file.")
    subjects = [_split_name(p)[0] for p in csvs]
    twice = sorted({s for s in subjects if subjects.count(s) > 1})
    if twice:
        raise BenchmarkFormatError(f"{path} holds more than one file for {', '.join(twice)} (val and dev?). "
                                   "Keep one split per folder: evaluate on val, dev is for few-shot examples.")
    return [q for p in csvs for q in _read_ceval_csv(p)]


def mc_prompt(question: MCQuestion) -> str:
    """C-Eval's zero-shot prompt for one question, ending in ``答案：`` so the next token is the letter (07_evaluate)."""
    subject = CEVAL_SUBJECTS_ZH.get(question.subject, question.subject.replace("_", " "))
    options = "".join(f"{letter}. {text}\n" for letter, text in question.options.items())
    return f"以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n{question.question}\n{options}答案："


def _logits_kwarg(model) -> str | None:
    """The forward argument that limits logits to the last positions (``num_logits_to_keep`` in transformers 4.48)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model
    parameters = inspect.signature(base.forward).parameters
    return next((name for name in ("logits_to_keep", "num_logits_to_keep") if name in parameters), None)


def _last_logprobs(model, sequences: list[list[int]], keep: int, pad_id: int):
    """log-softmax over the vocabulary at the last ``keep`` positions of each sequence, in one left-padded batch."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in sequences], device=model.device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=model.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each sequence counts from 0 at its first real token
    extra = {name: keep} if (name := _logits_kwarg(model)) else {}
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **extra).logits
    return torch.log_softmax(logits[:, -keep:, :].float(), dim=-1)


def option_logprobs(chat: ChatModel, prompts: list[str], options: tuple[str, ...] = LETTERS,
                    template_name: str | None = None, batch_size: int = 8) -> list[dict[str, float]]:
    """log p(option | prompt) for each option as the model's continuation of each prompt, batched (07_evaluate)."""
    tok = chat.tokenizer
    texts = [build_prompt(template_name, p) if template_name else p for p in prompts]
    # No special tokens anywhere: the chat template brings its own, and the option's tokens follow the prompt's as is.
    prompt_ids = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
    option_ids = {o: tok(o, add_special_tokens=False)["input_ids"] for o in options}
    if not options or any(not ids for ids in option_ids.values()):
        raise ValueError(f"Every option must be a non-empty string that tokenizes to something; got {list(options)}.")
    # Scoring option o after prompt p reads the model's predictions at the last len(o) positions of p + o[:-1].
    # Single-token options all share the input p itself, so each distinct input is run once.
    wanted: dict[tuple[int, ...], list[tuple[int, str]]] = {}
    for i, p in enumerate(prompt_ids):
        for option, ids in option_ids.items():
            wanted.setdefault(tuple(p + ids[:-1]), []).append((i, option))
    inputs = sorted(wanted, key=len)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    keep = max(len(ids) for ids in option_ids.values())
    results: list[dict[str, float]] = [{} for _ in prompt_ids]
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start:start + batch_size]
        logprobs = _last_logprobs(chat.model, [list(s) for s in batch], keep, pad_id)
        for sequence, table in zip(batch, logprobs):
            for i, option in wanted[sequence]:
                ids = option_ids[option]
                rows = table[keep - len(ids):]  # the positions that predict the option's tokens
                results[i][option] = float(sum(rows[k, token] for k, token in enumerate(ids)))
    return [{option: row[option] for option in option_ids} for row in results]


def _continuation_logprobs(chat: ChatModel, prefixes: list[str], continuations: list[str],
                          batch_size: int = 8) -> list[tuple[float, int]]:
    """(log p(continuation | prefix), continuation tokens) for each pair, by teacher forcing in right-padded batches;
    an empty prefix starts from the end-of-text token, as a document after another in XTuner's packed data (used by
    perplexity, domain_scores and preference_scores)."""
    import torch

    tok = chat.tokenizer
    start = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
    pairs = []
    for prefix, continuation in zip(prefixes, continuations, strict=True):
        head = tok(prefix, add_special_tokens=False)["input_ids"] if prefix else start
        tail = tok(continuation, add_special_tokens=False)["input_ids"]
        if not tail:
            raise ValueError(f"Nothing to score: the continuation {continuation!r} has no tokens.")
        pairs.append((head, tail))
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    results = []
    for first in range(0, len(pairs), batch_size):
        batch = pairs[first:first + batch_size]
        width = max(len(h) + len(t) for h, t in batch)
        ids = torch.tensor([h + t + [pad_id] * (width - len(h) - len(t)) for h, t in batch], device=chat.model.device)
        mask = torch.tensor([[1] * (len(h) + len(t)) + [0] * (width - len(h) - len(t)) for h, t in batch],
                            device=chat.model.device)
        with torch.no_grad():
            logprobs = torch.log_softmax(chat.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        for row, (head, tail) in zip(logprobs, batch):
            positions = torch.arange(len(head) - 1, len(head) + len(tail) - 1, device=row.device)
            results.append((float(row[positions, torch.tensor(tail, device=row.device)].sum()), len(tail)))
    return results


def perplexity(chat: ChatModel, texts: list[str], batch_size: int = 8) -> float:
    """exp(mean negative log-likelihood per token) of ``texts``, each scored from the start (09_pretrain)."""
    import math

    scored = _continuation_logprobs(chat, [""] * len(texts), texts, batch_size)
    return math.exp(-sum(lp for lp, _ in scored) / sum(n for _, n in scored))


def domain_scores(chat: ChatModel, heldout: list[str], completions: dict[str, str]) -> dict[str, float]:
    """Perplexity of held-out domain text, and log p(answer | start) of each domain completion (09_pretrain)."""
    scored = _continuation_logprobs(chat, list(completions), list(completions.values()))
    return {"heldout_perplexity": perplexity(chat, heldout),
            **{f"log p({answer} | {start})": lp for (start, answer), (lp, _) in zip(completions.items(), scored)}}


def write_pretrain_report(reports_dir: Path, before: dict, after: dict, **details) -> Path:
    """``reports/pretrain.json``: the domain scores before and after continued pre-training, and ``details`` such as
    the iterations trained; the course report shows it (09_pretrain)."""
    summary = {"before": before, "after": after,
               "perplexity_drop": round(1 - after["heldout_perplexity"] / before["heldout_perplexity"], 4), **details}
    return files.atomic_write_text(Path(reports_dir) / "pretrain.json",
                                   json.dumps(summary, ensure_ascii=False, indent=2) + "\n", overwrite=True)


def preference_scores(chat: ChatModel, pairs: list[dict], batch_size: int = 8) -> list[dict]:
    """log p(answer | prompt) of each pair's chosen and rejected answer and their token counts, the prompt and the
    answers written with the chat template exactly as XTuner's preference dataset writes them (10_preference)."""
    from .formats import CHATML

    def template(messages: list[dict], start: bool) -> str:
        return chat.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=start,
                                                  chat_template=CHATML)

    prompts = [template(p["prompt"], True) for p in pairs]
    scored = {}
    for side in ("chosen", "rejected"):
        answers = [template(p["prompt"] + p[side], False)[len(prompt):] for p, prompt in zip(pairs, prompts)]
        scored[side] = _continuation_logprobs(chat, prompts, answers, batch_size)
    return [{"question": p["prompt"][-1]["content"], "chosen": p["chosen"][0]["content"],
             "rejected": p["rejected"][0]["content"], "chosen_logp": c, "chosen_tokens": nc,
             "rejected_logp": r, "rejected_tokens": nr}
            for p, (c, nc), (r, nr) in zip(pairs, scored["chosen"], scored["rejected"])]


def preference_accuracy(scores: list[dict], reference: list[dict] | None = None) -> dict[str, float]:
    """How often the model prefers ``chosen``: per token (log-likelihood divided by length, the headline figure), by
    the plain sum (which favours short answers), and, given the base model's ``reference`` scores, by DPO's implicit
    reward log p/p_ref (10_preference)."""
    per_token = [s["chosen_logp"] / s["chosen_tokens"] - s["rejected_logp"] / s["rejected_tokens"] for s in scores]
    result = {"accuracy": sum(m > 0 for m in per_token) / len(scores),
              "sum_accuracy": sum(s["chosen_logp"] > s["rejected_logp"] for s in scores) / len(scores),
              "mean_margin_per_token": sum(per_token) / len(scores)}
    if reference is not None:
        rewards = [(s["chosen_logp"] - b["chosen_logp"]) - (s["rejected_logp"] - b["rejected_logp"])
                   for s, b in zip(scores, reference, strict=True)]
        result["implicit_reward_accuracy"] = sum(r > 0 for r in rewards) / len(scores)
    return result


def write_preference_report(reports_dir: Path, before: dict, after: dict, **details) -> Path:
    """``reports/preference.json``: preference accuracy on the held-out pairs before and after preference tuning,
    and ``details`` such as the iterations; the course report shows it (10_preference)."""
    summary = {"before": before, "after": after, **details}
    return files.atomic_write_text(Path(reports_dir) / "preference.json",
                                   json.dumps(summary, ensure_ascii=False, indent=2) + "\n", overwrite=True)


def score_benchmark(chat: ChatModel, questions: list[MCQuestion], template_name: str | None = None,
                    batch_size: int = 8) -> list[dict]:
    """Each question's predicted letter (the most likely option), whether it is right, and the log-probabilities (07_evaluate)."""
    logprobs = option_logprobs(chat, [mc_prompt(q) for q in questions], LETTERS, template_name, batch_size)
    results = []
    for question, row in zip(questions, logprobs):
        predicted = max(row, key=row.get)
        results.append({"subject": question.subject, "id": question.id, "answer": question.answer,
                        "predicted": predicted, "correct": predicted == question.answer, "logprobs": row})
    return results


def accuracy_table(results: dict[str, list[dict]]):
    """Accuracy per subject and overall for each model, with the question count and the chance level (07_evaluate)."""
    import pandas as pd

    if not results or not all(results.values()):
        raise ValueError("accuracy_table needs {model name: score_benchmark results}, each with at least one question.")
    names = list(results)
    keys = [(r["subject"], r["id"]) for r in results[names[0]]]
    for name in names[1:]:
        if [(r["subject"], r["id"]) for r in results[name]] != keys:
            raise ValueError(f"'{name}' was scored on other questions than '{names[0]}'; "
                             "score every model on the same benchmark so the columns compare.")
    subjects = list(dict.fromkeys(subject for subject, _ in keys))
    rows = {}
    for subject in [*subjects, "overall"]:
        picked = [i for i, (s, _) in enumerate(keys) if subject in (s, "overall")]
        row = {name: sum(results[name][i]["correct"] for i in picked) / len(picked) for name in names}
        row["questions"] = len(picked)
        row["chance"] = sum(1 / len(results[names[0]][i]["logprobs"]) for i in picked) / len(picked)
        rows[subject] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "subject"
    return table


# --- general-knowledge probe -----------------------------------------------------------------------

def load_probe(path: Path = PROBE_FILE) -> list[dict]:
    """The general-knowledge questions (``lang``, ``question``, ``expect`` regex) of the forgetting probe (07_evaluate)."""
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))["questions"]
    except FileNotFoundError:
        raise BenchmarkFormatError(f"{path} does not exist. Check the path, or use the shipped "
                                   f"{PROBE_FILE.name}.") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BenchmarkFormatError(f"{path}: expected {{\"questions\": [{{\"lang\", \"question\", \"expect\"}}, ...]}} "
                                   f"({type(exc).__name__}: {exc}).") from None
    for number, item in enumerate(items, start=1):
        _check_probe_item(path, number, item)
    if not items:
        raise BenchmarkFormatError(f"{path} holds no questions.")
    return items


def _check_probe_item(path: Path, number: int, item) -> None:
    where = f"{path}, question {number}"
    if not isinstance(item, dict) or item.get("lang") not in ("en", "zh"):
        raise BenchmarkFormatError(f"{where}: each question needs \"lang\": \"en\" or \"zh\".")
    for key in ("question", "expect"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise BenchmarkFormatError(f"{where}: \"{key}\" is missing or empty.")
    try:
        re.compile(item["expect"])
    except re.error as exc:
        raise BenchmarkFormatError(f"{where}: \"expect\" is not a valid regular expression ({exc}).") from None


def _judge_probe(item: dict, answer: str) -> bool:
    """True when ``answer`` matches the item's ``expect`` regular expression, ignoring case."""
    return re.search(item["expect"], answer, flags=re.IGNORECASE) is not None


# --- OpenCompass (GPU platforms) -------------------------------------------------------------------

OPENCOMPASS_DATASETS = ("ceval_gen", "gsm8k_gen")


def _needs_remote_code(model_dir: Path) -> bool:
    """True for models that ship their own modelling code (InternLM2): config.json has ``auto_map``."""
    config = Path(model_dir) / "config.json"
    if config.is_file():
        try:
            return "auto_map" in json.loads(config.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            pass
    return "internlm" in Path(model_dir).name.lower()


def opencompass_command(model_dir: Path, work_dir: Path, datasets: tuple[str, ...] = OPENCOMPASS_DATASETS,
                        max_out_len: int = 512, batch_size: int = 8, num_gpus: int = 1) -> str:
    """The ``opencompass`` command line that evaluates a local HF chat model on OpenCompass datasets (07_evaluate)."""
    if not datasets:
        raise ValueError("Name at least one OpenCompass dataset config, e.g. ceval_gen.")
    args = ["opencompass", "--datasets", *datasets, "--hf-type", "chat", "--hf-path", str(model_dir),
            "--max-out-len", str(max_out_len), "--batch-size", str(batch_size),
            "--hf-num-gpus", str(num_gpus), "--work-dir", str(work_dir)]  # --num-gpus is refused since 0.3
    if _needs_remote_code(Path(model_dir)):
        args += ["--model-kwargs", "trust_remote_code=True", "--tokenizer-kwargs", "trust_remote_code=True"]
    return shlex.join(args)


def _dataset_import(name: str) -> str:
    """``from opencompass.configs.datasets.ceval.ceval_gen import ceval_datasets`` for ``ceval_gen``."""
    if not re.fullmatch(r"[a-z][a-z0-9]*(_[A-Za-z0-9]+)+", name):
        raise ValueError(f"{name!r} is not an OpenCompass dataset config name such as ceval_gen or gsm8k_gen.")
    family = name.split("_")[0]
    return f"    from opencompass.configs.datasets.{family}.{name} import {family}_datasets"


def write_opencompass_config(model_dir: Path, path: Path, datasets: tuple[str, ...] = OPENCOMPASS_DATASETS,
                             max_out_len: int = 512, batch_size: int = 8, num_gpus: int = 1,
                             overwrite: bool = False) -> Path:
    """Write an OpenCompass config (datasets plus one HuggingFacewithChatTemplate model) for ``opencompass CONFIG`` (07_evaluate)."""
    files.check_writable(Path(path), overwrite)
    if not datasets:
        raise ValueError("Name at least one OpenCompass dataset config, e.g. ceval_gen.")
    families = [name.split("_")[0] for name in datasets]
    if len(set(families)) != len(families):
        raise ValueError(f"{list(datasets)}: one config per dataset family (each defines the same *_datasets name).")
    kwargs = ("        model_kwargs=dict(trust_remote_code=True),\n"
              "        tokenizer_kwargs=dict(trust_remote_code=True),\n") if _needs_remote_code(Path(model_dir)) else ""
    text = (
        "# OpenCompass config written by the course (notebook 07). Run: opencompass THIS_FILE --work-dir DIR\n"
        "from mmengine.config import read_base\n\n"
        "from opencompass.models import HuggingFacewithChatTemplate\n\n"
        "with read_base():\n" + "\n".join(_dataset_import(n) for n in datasets) + "\n\n"
        f"datasets = [{', '.join(f'*{f}_datasets' for f in families)}]\n\n"
        "models = [\n    dict(\n        type=HuggingFacewithChatTemplate,\n"
        f"        abbr={Path(model_dir).name + '-hf'!r},\n        path={str(model_dir)!r},\n{kwargs}"
        f"        max_out_len={int(max_out_len)},\n        batch_size={int(batch_size)},\n"
        f"        run_cfg=dict(num_gpus={int(num_gpus)}),\n    )\n]\n"
    )
    ast.parse(text)  # a bug here must not reach the GPU machine
    return files.atomic_write_text(Path(path), text, overwrite=overwrite)


# --- comparing models: answers, scores, chart and report (built on the functions above) -------------------------

def answer_and_score(models: dict, items: list[dict], template_name: str, system: str = "",
                     max_new_tokens: int = 64) -> "pandas.DataFrame":
    """Each model's greedy answers to the evaluation items, one row per (model, question) with its scores (07_evaluate)."""
    import pandas as pd

    rows = [{"model": name, "question": it["question"], "answer": answer,
             **score_answer(answer, it["references"], it.get("keywords", []))}
            for name, it, answer in _each_answer(models, items, template_name, system, max_new_tokens)]
    if not rows:
        raise ValueError("Nothing to evaluate: the evaluation set is empty. Check the file notebook 01 or 02 wrote.")
    return pd.DataFrame(rows)


def mean_scores(table: "pandas.DataFrame") -> "pandas.DataFrame":
    """The mean of each score per model, models in the order they were evaluated (07_evaluate)."""
    return table.groupby("model", sort=False)[["exact", "contains", "rouge_l"]].mean().astype(float)


def answer_probe(models: dict, probe: list[dict], template_name: str, system: str = "",
                 max_new_tokens: int = 64) -> "pandas.DataFrame":
    """Each model's answers to the general-knowledge probe, judged by the item's regex (07_evaluate)."""
    import pandas as pd

    return pd.DataFrame([{"model": name, "lang": p["lang"], "question": p["question"], "answer": a,
                          "correct": _judge_probe(p, a)}
                         for name, p, a in _each_answer(models, probe, template_name, system, max_new_tokens)])


def _each_answer(models: dict, items: list[dict], template_name: str, system: str, max_new_tokens: int):
    """(model name, item, greedy answer) for every model and item, one batched generation per model."""
    for name, model in models.items():
        answers = generate_answers(model, [it["question"] for it in items], template_name, system=system,
                                   max_new_tokens=max_new_tokens)
        yield from ((name, it, answer) for it, answer in zip(items, answers))


def plot_comparison(probe_scores, heldout_scores, path: Path) -> Path:
    """Two bar charts side by side: general-probe accuracy and the held-out score, one bar per model (07_evaluate)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for ax, scores, title in [(axes[0], probe_scores, "general-knowledge probe (accuracy)"),
                              (axes[1], heldout_scores, f"held-out set ({heldout_scores.name})")]:
        bars = ax.bar(list(scores.index), list(scores.values), color=["#8c8c8c", "#3b78c2", "#d9822b"][:len(scores)])
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in scores.values])
        ax.set_ylim(0, 1.12)
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path  # the figure stays open, so Jupyter shows it below the cell


def write_report(reports_dir: Path, heldout_scores, accuracy, probe_scores, details: dict, chart: Path | None,
                 eval_set: str) -> dict:
    """``evaluation.md`` (for people) and ``evaluation.json`` (for programs, with every answer) (07_evaluate)."""
    from .course import md_table

    reports_dir = Path(reports_dir)
    summary = {
        "eval_set": eval_set,
        "heldout": {m: {k: round(float(v), 4) for k, v in row.items()} for m, row in heldout_scores.iterrows()},
        "benchmark": {s: {k: (float(v) if k != "questions" else int(v)) for k, v in row.items()}
                      for s, row in accuracy.iterrows()},
        "probe": {m: float(v) for m, v in probe_scores.items()},
        "chart": Path(chart).name if chart else None,
    }
    as_rows = lambda frame, key: [{key: i, **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}}
                                  for i, r in frame.to_dict(orient="index").items()]
    lines = ["# Evaluation (notebook 07)", "", f"Evaluation set: {eval_set}", "",
             "## Held-out set (mean scores)", "", md_table(as_rows(heldout_scores, "model")), "",
             "## Multiple-choice benchmark (accuracy; C-Eval format, log-likelihood of the option letter)", "",
             md_table(as_rows(accuracy, "subject")), "",
             "## General-knowledge probe (accuracy)", "",
             md_table([{"model": m, "accuracy": round(float(v), 3)} for m, v in probe_scores.items()])]
    if chart:
        lines += ["", f"![evaluation]({Path(chart).name})"]
    for name, table in details.items():
        keep = [c for c in ("model", "question", "answer", "contains", "rouge_l", "correct") if c in table.columns]
        lines += ["", f"## Answers: {name}", "", md_table(table[keep].round(3).to_dict(orient="records"))]
    files.atomic_write_text(reports_dir / "evaluation.md", "\n".join(lines) + "\n", overwrite=True)
    full = summary | {"details": {n: t.to_dict(orient="records") for n, t in details.items()}}
    files.atomic_write_text(reports_dir / "evaluation.json", json.dumps(full, ensure_ascii=False, indent=2) + "\n",
                            overwrite=True)
    return summary
