"""GGUF on the CPU: llama.cpp's own converter, quantisation and chat through llama-cpp-python.

``make install`` builds llama-cpp-python portably (no ``-march=native``) and copies the converter that its source
release vendors (``convert_hf_to_gguf.py`` with its own ``gguf-py``) into the environment; the separate ``gguf``
package on the index does not match that converter.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import chat, cli, deploy, files
from .serving import check_merged_dir

CONVERTER_DIR = Path(sys.prefix) / "share" / "llama.cpp-convert"  # written by helpers/install.py
QUANT_TYPES = ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k")  # f16 comes from the converter


class GGUFError(RuntimeError):
    """llama.cpp's converter or quantiser failed; the message carries its own error."""


class UnknownTokenizerError(GGUFError):
    """The converter does not know this tokenizer's pre-tokenizer (a tokenizer trained for the course, say)."""


def _converter() -> tuple[Path, Path]:
    script, gguf_py = CONVERTER_DIR / "convert_hf_to_gguf.py", CONVERTER_DIR / "gguf-py"
    if not script.is_file() or not gguf_py.is_dir():
        raise FileNotFoundError(f"llama.cpp's converter is not in {CONVERTER_DIR}: run `make install` "
                                "(it copies the converter from the llama-cpp-python source release).")
    return script, gguf_py


def convert_to_gguf(model_dir: Path, out_file: Path, template_name: str | None = None, outtype: str = "f16",
                    overwrite: bool = False) -> Path:
    """Convert a merged HF model folder to one GGUF file with llama.cpp's ``convert_hf_to_gguf.py``, printing the
    command; with ``template_name`` the file carries that xtuner template as its chat template; written to a
    temporary name and renamed when complete (08_serve)."""
    model_dir, out_file = check_merged_dir(model_dir), Path(out_file)
    files.check_writable(out_file, overwrite)
    script, gguf_py = _converter()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".partial")
    with tempfile.TemporaryDirectory(dir=out_file.parent, prefix=".stage-") as stage:
        source = _with_chat_template(model_dir, Path(stage), template_name) if template_name else model_dir
        command = [sys.executable, str(script), str(source), "--outfile", str(tmp), "--outtype", outtype,
                   "--model-name", model_dir.name]
        env = {"PYTHONPATH": str(gguf_py)}  # the converter's own gguf-py, not the index's gguf package
        print(f"$ PYTHONPATH={shlex.quote(str(gguf_py))} {shlex.join(command)}", flush=True)
        proc = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, **env))
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        found = cli._find_traceback(proc.stderr + proc.stdout)  # the converter's own last frames and its error
        error = "\n".join(found.splitlines()[-6:]) if found else (proc.stderr + proc.stdout)[-3000:]
        kind = UnknownTokenizerError if "pre-tokenizer was not recognized" in error else GGUFError
        raise kind(f"llama.cpp's converter failed on {model_dir} (exit {proc.returncode}). Its error:\n{error}")
    tmp.replace(out_file)
    return out_file


def _with_chat_template(model_dir: Path, stage: Path, template_name: str) -> Path:
    """A folder of links to ``model_dir``'s files whose tokenizer_config.json adds the xtuner template as a Jinja
    chat template (the merged folder itself is not changed)."""
    for item in model_dir.iterdir():
        if item.name != "tokenizer_config.json":
            (stage / item.name).symlink_to(item.resolve())
    config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    # llama.cpp hands the template a BOS token even when the model has none (SmolLM2's id 1 is <|im_start|>)
    config["chat_template"] = deploy.chatml_jinja(template_name, bos=config.get("bos_token") is not None)
    (stage / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    return stage


def quantize(gguf_file: Path, qtype: str, out_file: Path | None = None, overwrite: bool = False) -> Path:
    """Quantise a GGUF file to ``qtype`` (``q8_0``, ``q4_0``...) with ``llama_cpp.llama_model_quantize`` in a child
    process (its per-tensor log stays out of the notebook; the summary is printed); the output defaults to the same
    name with the type in place of ``f16`` (08_serve)."""
    gguf_file = Path(gguf_file)
    if qtype not in QUANT_TYPES:
        raise ValueError(f"unknown quantisation type {qtype!r}; choose one of {', '.join(QUANT_TYPES)}.")
    if not gguf_file.is_file():
        raise FileNotFoundError(f"{gguf_file} does not exist: convert the model first (convert_to_gguf).")
    out_file = Path(out_file or gguf_file.with_name(gguf_file.name.replace("f16", qtype)))
    if out_file == gguf_file:
        out_file = gguf_file.with_name(f"{gguf_file.stem}-{qtype}.gguf")
    files.check_writable(out_file, overwrite)
    tmp = out_file.with_name(out_file.name + ".partial")
    proc = subprocess.run([sys.executable, "-c", _QUANTIZE, str(gguf_file), str(tmp),
                           f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}", str(os.cpu_count() or 1)],
                          capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise GGUFError(f"llama_model_quantize({gguf_file.name} -> {qtype}) failed (exit {proc.returncode}). "
                        f"llama.cpp said:\n{log[-3000:]}")
    tmp.replace(out_file)
    summary = [line.split(": ", 1)[-1] for line in log.splitlines() if "model size" in line or "quant size" in line]
    print(f"{gguf_file.name} -> {out_file.name}: " + "; ".join(summary), flush=True)
    return out_file


# Run in a child process: llama.cpp writes one log line per tensor to the process's own stderr.
_QUANTIZE = """import ctypes, sys, llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype, params.nthread = getattr(llama_cpp, sys.argv[3]), int(sys.argv[4])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(params)))
"""


def _load_gguf(gguf_file: Path, n_ctx: int = 2048, n_threads: int | None = None):
    """A ``llama_cpp.Llama`` on the file, quiet, with this machine's cores."""
    import llama_cpp

    if not Path(gguf_file).is_file():
        raise FileNotFoundError(f"{gguf_file} does not exist: convert the model first (convert_to_gguf).")
    return llama_cpp.Llama(model_path=str(gguf_file), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 1,
                           verbose=False, seed=0)


def _gguf_answers(llm, questions: list[str], template_name: str, system: str = "",
                 max_new_tokens: int = 64) -> list[str]:
    """Greedy answers from a GGUF model to the same prompt text training used (``chat.build_prompt``), cut at the
    template's stop words."""
    stops = chat._stop_words(template_name)
    answers = []
    for question in questions:
        out = llm(chat.build_prompt(template_name, question, system), max_tokens=max_new_tokens, temperature=0.0,
                  top_k=1, stop=stops)
        answers.append(out["choices"][0]["text"].strip())
    return answers


def compare_formats(merged: Path, gguf_files: dict[str, Path], questions: list[str], template_name: str,
                    system: str = "", max_new_tokens: int = 64) -> tuple[list[dict], dict[str, list[str]]]:
    """One run, one row per format: file size, load time, decode tokens/s and how many greedy answers equal the
    transformers fp32 model's; tokens are counted by re-tokenising each answer with the model's tokenizer, one
    rule for every row (08_serve)."""
    start = time.perf_counter()
    reference = chat.load_chat_model(merged)
    rows, answers = [], {}
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    answers["transformers fp32"] = [chat.generate_answers(reference, [q], template_name, system, max_new_tokens)[0]
                                    for q in questions]  # one at a time, as a chat server answers
    timings = {"transformers fp32": (loaded, time.perf_counter() - start, files.dir_size_gb(merged) * 1024)}
    for name, path in gguf_files.items():
        start = time.perf_counter()
        llm = _load_gguf(path)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        answers[name] = _gguf_answers(llm, questions, template_name, system, max_new_tokens)
        timings[name] = (loaded, time.perf_counter() - start, Path(path).stat().st_size / 2**20)
        llm.close()
    count = lambda texts: sum(len(reference.tokenizer.encode(t, add_special_tokens=False)) for t in texts)  # noqa: E731
    for name, (load_s, answer_s, size_mb) in timings.items():
        same = sum(a == b for a, b in zip(answers[name], answers["transformers fp32"]))
        rows.append({"format": name, "size_mb": round(size_mb, 1), "load_s": round(load_s, 2),
                     "tokens_per_s": round(count(answers[name]) / answer_s, 1),
                     "same_answers": f"{same}/{len(questions)}"})
    return rows, answers
