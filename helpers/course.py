"""Run the whole course: every notebook in order with papermill, executed copies and a report in the working folder.

The learner copies (learner/: the lessons, with the exercises left to do) run by default; ``--solutions`` runs the
solution notebooks (notebooks/), which ``make test`` executes under nbmake on the cpu profile.

Usage: python -m helpers.course [--profile cpu] [--workdir DIR] [--set max_iters=20] [--only 00,01] [--solutions]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from . import files, install
from .workspace import LEARNER_DIR, NOTEBOOKS_DIR, get_workspace


def notebook_paths(solutions: bool = False) -> list[Path]:
    """The course notebooks in the order a learner runs them (``NN_slug.ipynb``): the learner copies, or with
    ``solutions`` the solution notebooks."""
    return sorted((NOTEBOOKS_DIR if solutions else LEARNER_DIR).glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, out_dir: Path, parameters: dict) -> float:
    """Execute one notebook with papermill (only the parameters it declares); returns seconds."""
    import papermill

    declared = papermill.inspect_notebook(str(path))
    start = time.time()
    papermill.execute_notebook(str(path), str(out_dir / path.name), kernel_name=install.KERNEL_NAME, cwd=str(path.parent),
                               parameters={k: v for k, v in parameters.items() if k in declared},
                               progress_bar=False)
    return time.time() - start


def run_course(profile: str = "cpu", workdir: str | None = None, overrides: dict | None = None,
               only: list[str] | None = None, solutions: bool = False) -> Path:
    """Run the notebooks (all, or those whose number is in ``only``) and write ``reports/course_report.md``."""
    ws = get_workspace(workdir)
    out_dir = ws.reports / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"profile_name": profile, "workdir": str(ws.root), **(overrides or {})}
    timings = []
    for path in notebook_paths(solutions):
        if only and path.name[:2] not in only:
            continue
        print(f"== {path.name} ...", flush=True)
        seconds = run_notebook(path, out_dir, parameters)
        timings.append({"notebook": path.name, "seconds": round(seconds, 1)})
        print(f"   done in {seconds:.0f} s", flush=True)
    report = write_report(ws.root, profile, timings)
    print(report.read_text(encoding="utf-8"))
    return report


def write_report(root: Path, profile: str, timings: list[dict]) -> Path:
    """Write ``reports/course_report.md`` for the notebooks executed in ``root`` (also for the course that
    ``make test`` executes under nbmake, tests/test_course.py)."""
    return files.atomic_write_text(Path(root) / "reports" / "course_report.md", render_report(root, profile, timings),
                                   overwrite=True)


def render_report(root: Path, profile: str, timings: list[dict]) -> str:
    """The short course report: time per notebook, training summary, before/after answers."""
    reports = Path(root) / "reports"
    lines = [f"# Course report ({profile} profile)", "", f"Working folder: `{root}`", "",
             md_table(timings + [{"notebook": "total", "seconds": round(sum(t["seconds"] for t in timings), 1)}])]
    training = reports / "training_summary.json"
    if training.is_file():
        lines += ["", "## Training", "", md_table([json.loads(training.read_text())])]
    comparison = reports / "comparison.json"
    if comparison.is_file():
        rows = json.loads(comparison.read_text(encoding="utf-8"))
        keep = ("kind", "question", "before", "after", "after_ok")
        lines += ["", "## Before and after fine-tuning", "", md_table([{k: r[k] for k in keep} for r in rows])]
    evaluation = reports / "evaluation.json"
    if evaluation.is_file():
        lines += ["", "## Evaluation (notebook 07)", "", _evaluation_summary(json.loads(evaluation.read_text(encoding="utf-8"))),
                  "", "Details: [evaluation.md](evaluation.md)"]
    gguf = reports / "gguf_table.json"
    if gguf.is_file():
        lines += ["", "## Serving (notebook 08)", "", "Greedy answers of each format compared with transformers fp32, "
                  "measured in one run:", "", md_table(json.loads(gguf.read_text(encoding="utf-8")))]
        if (reports / "web_demo.png").is_file():
            lines += ["", "The web demo in a browser: ![web demo](web_demo.png)"]
    pretrain = reports / "pretrain.json"
    if pretrain.is_file():
        summary = json.loads(pretrain.read_text(encoding="utf-8"))
        lines += ["", "## Continued pre-training (notebook 09)", "",
                  f"LoRA on the domain text for {summary.get('iterations', '?')} iterations; held-out perplexity "
                  f"{summary['perplexity_drop']:.0%} lower:", "",
                  md_table([{"measure": k, "base": round(v, 2), "pretrained": round(summary["after"][k], 2)}
                            for k, v in summary["before"].items()])]
    preference = reports / "preference.json"
    if preference.is_file():
        summary = json.loads(preference.read_text(encoding="utf-8"))
        lines += ["", "## Preference tuning (notebook 10)", "",
                  f"{summary.get('method', 'DPO')} with LoRA for {summary.get('iterations', '?')} iterations; how often "
                  "the model prefers the chosen answer on held-out pairs:", "",
                  md_table([{"pairs": name, "base": round(before["accuracy"], 2),
                             "tuned": round(summary["after"][name]["accuracy"], 2)}
                            for name, before in summary["before"].items()])]
    return "\n".join(lines) + "\n"


def _evaluation_summary(summary: dict) -> str:
    """One row per model: held-out scores, benchmark accuracy and the general probe, from ``evaluation.json``."""
    overall = summary["benchmark"]["overall"]
    rows = [{"model": model, **{f"held-out {k}": round(v, 3) for k, v in scores.items()},
             "benchmark accuracy": round(overall[model], 3) if model in overall else "",
             "general probe": round(summary["probe"][model], 3) if model in summary["probe"] else ""}
            for model, scores in summary["heldout"].items()]
    return f"Evaluation set: {summary['eval_set']}; benchmark chance level {overall['chance']:.2f}.\n\n" + md_table(rows)


def md_table(rows: list[dict]) -> str:
    """A Markdown table of ``rows`` (newlines and pipes escaped) (08_serve)."""
    if not rows:
        return ""
    cols = list(rows[0])
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(out + ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows])


def _parse_set(items: list[str]) -> dict:
    values = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the xtuner-course notebooks in order.")
    parser.add_argument("--profile", default="cpu", choices=["tiny", "cpu", "gpu"])
    parser.add_argument("--workdir", default=None, help="working folder (default: $COURSE_WORKDIR or ./workspace)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="notebook parameter")
    parser.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 00,01")
    parser.add_argument("--solutions", action="store_true", help="run notebooks/ (with the reference solutions)")
    args = parser.parse_args(argv)
    run_course(args.profile, args.workdir, _parse_set(args.set), args.only.split(",") if args.only else None,
               args.solutions)


if __name__ == "__main__":
    main()
