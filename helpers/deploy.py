"""Commands for serving the merged model elsewhere: LMDeploy and vLLM on a GPU machine, Ollama, ModelScope (08_serve).

Only builds text (shell lines, a Jinja chat template, an Ollama Modelfile). Flags come from the tools' parsers
(LMDeploy lmdeploy/cli/, vLLM's engine-argument docs, ModelScope 1.40.2 modelscope_hub/cli/); none is run here.
"""

from __future__ import annotations

import json
import shlex
import string
from pathlib import Path

JINJA_FILE = "xtuner_chat_template.jinja"  # written into the merged folder, read by ``vllm serve --chat-template``

# xtuner PROMPT_TEMPLATE key -> LMDeploy built-in chat template (names registered in lmdeploy/model.py).
# LMDeploy guesses the template from the model path, and a folder called "merged" matches none, so always pass it.
# Its "qwen" and "internlm2" templates add their own default system prompt when a request has none.
_LMDEPLOY = {
    "internlm2_chat": "internlm2", "internlm_chat": "internlm", "qwen_chat": "qwen", "llama3_chat": "llama3",
    "llama2_chat": "llama2", "baichuan2_chat": "baichuan2", "chatglm3": "chatglm3", "mistral": "mistral",
    "mixtral": "mixtral", "phi3_chat": "phi-3", "gemma": "gemma", "deepseek_v2": "deepseek", "vicuna": "vicuna",
}


def _lmdeploy_template(xtuner_template: str) -> str:
    """The LMDeploy ``--chat-template`` name for an xtuner prompt template key, e.g. qwen_chat -> qwen."""
    if xtuner_template not in _LMDEPLOY:
        raise ValueError(f"No LMDeploy chat template known for xtuner template {xtuner_template!r}; "
                         f"known: {', '.join(sorted(_LMDEPLOY))}.")
    return _LMDEPLOY[xtuner_template]


def curl_command(url: str, question: str = "你是谁？", stream: bool = False, model: str | None = None,
                 max_tokens: int | None = None) -> str:
    """A bash line asking an OpenAI-compatible server at ``url`` one question, greedy, at most ``max_tokens`` tokens
    (None: the server's limit; llama-cpp-python's is the whole context); with ``stream`` the answer arrives as
    ``data: {...}`` events, ending with ``data: [DONE]`` (08_serve)."""
    endpoint = url.rstrip("/")
    endpoint += "" if endpoint.endswith("/v1/chat/completions") else "/v1/chat/completions"
    body = {**({"model": model} if model else {}), "messages": [{"role": "user", "content": question}],
            "temperature": 0, **({"max_tokens": max_tokens} if max_tokens else {}), **({"stream": True} if stream else {})}
    return (f"curl{' -N' if stream else ''} {shlex.quote(endpoint)} -H {shlex.quote('Content-Type: application/json')}"
            f" -d {shlex.quote(json.dumps(body, ensure_ascii=False))}")


def gpu_commands(merged: str | Path, xtuner_template: str, port: int = 23333, model_name: str = "my-assistant",
                 trust_remote_code: bool = True, host: str = "127.0.0.1", repo_id: str = "OWNER/NAME",
                 chat_template_file: str | Path | None = None) -> list[dict]:
    """Shell lines (dicts of tool, what, command) to chat with, serve, 4-bit quantize and upload the merged model;
    servers bind ``host``, loopback unless asked; LMDeploy and vLLM are alternatives on one port; vLLM reads
    ``chat_template_file`` (default: merged/JINJA_FILE), written from ``chatml_jinja`` (08_serve)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}.")
    if not host.strip() or not model_name.strip() or repo_id.count("/") != 1:
        raise ValueError("host and model_name must not be empty, and repo_id must be OWNER/NAME.")
    merged = Path(merged)
    awq = merged.with_name(merged.name + "-w4a16")  # a sibling folder, never inside the merged model
    jinja = Path(chat_template_file) if chat_template_file else merged / JINJA_FILE
    m, a, j, t, name, h, repo = map(shlex.quote, (str(merged), str(awq), str(jinja),
                                                  _lmdeploy_template(xtuner_template), model_name, host, repo_id))
    client = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # a server bound to every address
    curl = curl_command(f"http://{f'[{client}]' if ':' in client else client}:{port}", model=model_name)
    vllm = (f"vllm serve {m} --chat-template {j} --served-model-name {name} --host {h} --port {port} "
            f"--dtype auto --max-model-len 4096" + (" --trust-remote-code" if trust_remote_code else ""))
    rows = [
        ("LMDeploy", "命令行对话", f"lmdeploy chat {m} --chat-template {t}"),
        ("LMDeploy", "启动 OpenAI 兼容服务", f"lmdeploy serve api_server {m} --chat-template {t} --model-name {name} "
                                           f"--server-name {h} --server-port {port}"),
        ("LMDeploy", "调用服务（另开一个终端）", curl),
        ("LMDeploy", "AWQ 4bit 量化（W4A16）", f"lmdeploy lite auto_awq {m} --work-dir {a} --w-bits 4 --w-group-size 128"),
        ("LMDeploy", "与 4bit 模型对话", f"lmdeploy chat {a} --model-format awq --chat-template {t}"),
        ("vLLM", "启动 OpenAI 兼容服务（与 LMDeploy 二选一）", vllm),
        ("vLLM", "调用服务（另开一个终端）", curl),
        ("ModelScope", "登录（访问令牌在 modelscope.cn 的账号设置里）", "modelscope login --token YOUR_TOKEN"),
        ("ModelScope", "建私有仓库（upload 自动建的仓库是公开的）",
         f"modelscope create {repo} --repo-type model --visibility private --exist-ok"),
        ("ModelScope", "上传合并后的模型", f"modelscope upload {repo} {m} --repo-type model"),
    ]
    return [{"tool": tool, "what": what, "command": command} for tool, what, command in rows]


def _template(xtuner_template: str) -> dict:
    from xtuner.utils import PROMPT_TEMPLATE

    if xtuner_template not in PROMPT_TEMPLATE:
        raise ValueError(f"xtuner has no prompt template {xtuner_template!r}; "
                         f"it has: {', '.join(sorted(PROMPT_TEMPLATE))}.")
    return dict(PROMPT_TEMPLATE[xtuner_template])


def _fill(fmt: str, fields: dict[str, str], literal) -> str:
    """``fmt`` (a str.format template) with each ``{field}`` replaced by ``fields[field]`` and text by ``literal``."""
    out = []
    for text, field, spec, conversion in string.Formatter().parse(fmt):
        out.append(literal(text))
        if field is not None:
            if field not in fields or spec or conversion:
                raise ValueError(f"Cannot translate {{{field}}} in the xtuner template {fmt!r}.")
            out.append(fields[field])
    return "".join(out)


def _jinja_text(text: str | None) -> str:
    """``text`` as a Jinja expression (a JSON string is also a Jinja string literal)."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""


def chatml_jinja(xtuner_template: str, bos: bool = True) -> str:
    """A Jinja chat template for ``vllm serve --chat-template FILE`` and transformers' ``apply_chat_template`` that
    renders exactly xtuner's training text; INSTRUCTION holds the assistant header, so it always ends with one;
    ``bos=False`` for a tokenizer without a BOS token, whose renderer (llama.cpp) would still pass one (08_serve)."""
    tpl = _template(xtuner_template)
    need_eos = not tpl.get("SUFFIX_AS_EOS", False)
    # How xtuner joins turns (utils/templates.py, dataset/map_fns/template_map_fn.py, dataset/utils.py encode_fn):
    # turn i is [BOS] [SYSTEM] INSTRUCTION(round=i+1), then answer + SUFFIX [+ EOS unless SUFFIX_AS_EOS] + SEP, so
    # every later INSTRUCTION follows SEP; BOS opens the first turn and each turn after an EOS.
    system = _fill(tpl.get("SYSTEM", "{system}"), {"system": "{{ ns.system }}"}, _jinja_text)
    instruction = _fill(tpl["INSTRUCTION"], {"input": '{{ message["content"] }}', "round": "{{ ns.round }}"},
                        _jinja_text)
    after = _jinja_text(tpl.get("SUFFIX", "")) + ("{{ eos_token }}" if need_eos else "") + _jinja_text(tpl.get("SEP"))
    return "\n".join([
        f"{{#- xtuner prompt template {xtuner_template}, written by helpers/deploy.py -#}}",
        '{%- set ns = namespace(system="", round=0) -%}',
        "{%- for message in messages -%}",
        '{%- if message["role"] == "system" -%}{%- set ns.system = message["content"] -%}',
        '{%- elif message["role"] == "user" -%}{%- set ns.round = ns.round + 1 -%}',
        (f"{{%- if bos_token is defined and bos_token and (ns.round == 1 or {str(need_eos).lower()}) -%}}"
         "{{ bos_token }}{%- endif -%}") if bos else "{#- no BOS: the tokenizer has none -#}",
        f'{{%- if ns.system -%}}{system}{{%- set ns.system = "" -%}}{{%- endif -%}}{instruction}',
        f'{{%- elif message["role"] == "assistant" -%}}{{{{ message["content"] }}}}{after}',
        "{%- endif -%}",
        "{%- endfor -%}",
    ]) + "\n"


def _go_text(text: str) -> str:
    """``text`` as literal text of an Ollama (Go) template inside a triple-quoted TEMPLATE."""
    if "{{" in text or '"""' in text:
        raise ValueError(f"Cannot put {text!r} into an Ollama template.")
    return text


def ollama_modelfile(gguf_file: str | Path, xtuner_template: str, system: str = "",
                     temperature: float | None = 0) -> str:
    """An Ollama Modelfile to save next to ``gguf_file``: FROM it, a Go TEMPLATE giving xtuner's prompt, a stop
    parameter per stop word, then optional temperature and SYSTEM (08_serve)."""
    name = Path(gguf_file).name
    if not name.endswith(".gguf") or any(c.isspace() or c == '"' for c in name):
        raise ValueError(f"Expected a .gguf file name without spaces or quotes, got {name!r}.")
    if '"""' in system:
        raise ValueError('The system prompt must not contain """.')
    tpl = _template(xtuner_template)
    if "{round}" in tpl["INSTRUCTION"]:
        raise ValueError(f"{xtuner_template} numbers its rounds, which this Ollama template cannot do.")
    stops = tpl.get("STOP_WORDS") or ([tpl["SUFFIX"]] if tpl.get("SUFFIX") else [])
    if any('"' in s or "\n" in s for s in stops):
        raise ValueError(f"Cannot write the stop words {stops!r} as Modelfile parameters.")
    # Ollama joins system messages into .System and keeps them in .Messages, so the loop skips them. No EOS is
    # written between turns: exact for templates whose SUFFIX is the EOS (ChatML: qwen_chat, internlm2_chat).
    head = _fill(tpl.get("SYSTEM", "{system}"), {"system": "{{ .System }}"}, _go_text)
    user = _fill(tpl["INSTRUCTION"], {"input": "{{ .Content }}"}, _go_text)
    after = _go_text(tpl.get("SUFFIX", "") + tpl.get("SEP", ""))
    template = (f'{{{{ if .System }}}}{head}{{{{ end }}}}{{{{ range .Messages }}}}{{{{ if eq .Role "user" }}}}{user}'
                f'{{{{ else if eq .Role "assistant" }}}}{{{{ .Content }}}}{after}{{{{ end }}}}{{{{ end }}}}')
    lines = [f"FROM ./{name}", f'TEMPLATE """{template}"""', *(f'PARAMETER stop "{s}"' for s in stops)]
    if temperature is not None:
        lines.append(f"PARAMETER temperature {temperature:g}")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"
