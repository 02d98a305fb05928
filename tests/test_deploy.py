"""helpers.deploy: the serving commands, the Jinja chat template and the Ollama Modelfile, checked against xtuner."""

import json
import shlex
import subprocess

import jinja2
import pytest

from helpers import deploy

MERGED = "/root/my work/merged"  # a space: every path has to be quoted
AWQ = "/root/my work/merged-w4a16"


def args(rows: list[dict], tool: str, start: str) -> list[str]:
    """The one command of ``tool`` that starts with ``start``, split the way bash splits it."""
    found = [shlex.split(r["command"]) for r in rows if r["tool"] == tool and r["command"].startswith(start)]
    assert len(found) == 1, (tool, start, rows)
    return found[0]


def option(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, (flag, argv)
    return argv[argv.index(flag) + 1]


@pytest.fixture(scope="module")
def rows():
    return deploy.gpu_commands(MERGED, "qwen_chat")


def test_lmdeploy_template_names():
    assert deploy._lmdeploy_template("qwen_chat") == "qwen"
    assert deploy._lmdeploy_template("internlm2_chat") == "internlm2"
    assert deploy._lmdeploy_template("llama3_chat") == "llama3"
    with pytest.raises(ValueError, match=r"'zephyr'.*internlm2_chat.*qwen_chat"):  # xtuner has it, LMDeploy not
        deploy.gpu_commands(MERGED, "zephyr")
    internlm = deploy.gpu_commands(MERGED, "internlm2_chat")
    assert option(args(internlm, "LMDeploy", "lmdeploy serve"), "--chat-template") == "internlm2"


def test_every_row_is_one_shell_line_with_a_chinese_description(rows):
    assert {r["tool"] for r in rows} == {"LMDeploy", "vLLM", "ModelScope"}
    for r in rows:
        assert set(r) == {"tool", "what", "command"} and "\n" not in r["command"]
        assert any("\u4e00" <= c <= "\u9fff" for c in r["what"]), r["what"]


def test_the_merged_path_is_quoted(rows):
    uses = [shlex.split(r["command"]) for r in rows if "merged" in r["command"]]
    assert len(uses) == 6  # chat, api_server, auto_awq, chat on the AWQ folder, vllm serve, upload
    for argv in uses:
        assert MERGED in argv or AWQ in argv, argv


def test_lmdeploy_always_names_the_chat_template(rows):
    chat = args(rows, "LMDeploy", f"lmdeploy chat {shlex.quote(MERGED)}")
    server = args(rows, "LMDeploy", "lmdeploy serve api_server")
    assert chat[:3] == ["lmdeploy", "chat", MERGED] and option(chat, "--chat-template") == "qwen"
    assert server[:4] == ["lmdeploy", "serve", "api_server", MERGED]
    assert option(server, "--chat-template") == "qwen" and option(server, "--model-name") == "my-assistant"
    assert option(server, "--server-port") == "23333"


def test_servers_bind_loopback_unless_asked(rows):
    assert option(args(rows, "LMDeploy", "lmdeploy serve"), "--server-name") == "127.0.0.1"
    assert option(args(rows, "vLLM", "vllm serve"), "--host") == "127.0.0.1"
    everywhere = deploy.gpu_commands(MERGED, "qwen_chat", host="0.0.0.0", port=8000)
    assert option(args(everywhere, "LMDeploy", "lmdeploy serve"), "--server-name") == "0.0.0.0"
    assert option(args(everywhere, "vLLM", "vllm serve"), "--host") == "0.0.0.0"
    assert args(everywhere, "vLLM", "curl")[1] == "http://127.0.0.1:8000/v1/chat/completions"  # not 0.0.0.0
    ipv6 = deploy.gpu_commands(MERGED, "qwen_chat", host="::1")
    assert args(ipv6, "LMDeploy", "curl")[1] == "http://[::1]:23333/v1/chat/completions"


def test_awq_quantizes_into_a_sibling_folder_and_chats_with_it(rows):
    awq = args(rows, "LMDeploy", "lmdeploy lite auto_awq")
    assert awq[:4] == ["lmdeploy", "lite", "auto_awq", MERGED] and option(awq, "--work-dir") == AWQ
    assert option(awq, "--w-bits") == "4" and option(awq, "--w-group-size") == "128"
    chat = args(rows, "LMDeploy", f"lmdeploy chat {shlex.quote(AWQ)}")
    assert chat[2] == AWQ and option(chat, "--model-format") == "awq" and option(chat, "--chat-template") == "qwen"


def test_vllm_serve_reads_the_jinja_template(rows):
    serve = args(rows, "vLLM", "vllm serve")
    assert serve[:3] == ["vllm", "serve", MERGED]
    assert option(serve, "--chat-template") == f"{MERGED}/{deploy.JINJA_FILE}"
    assert option(serve, "--served-model-name") == "my-assistant" and option(serve, "--port") == "23333"
    assert "--trust-remote-code" in serve and option(serve, "--max-model-len") == "4096"
    plain = deploy.gpu_commands(MERGED, "qwen_chat", trust_remote_code=False, model_name="小智 v1",
                                chat_template_file="/root/my work/gguf/chat_template.jinja")
    serve = args(plain, "vLLM", "vllm serve")
    assert "--trust-remote-code" not in serve and option(serve, "--served-model-name") == "小智 v1"
    assert option(serve, "--chat-template") == "/root/my work/gguf/chat_template.jinja"


@pytest.mark.parametrize("tool", ["LMDeploy", "vLLM"])
def test_curl_sends_one_valid_json_question(rows, tool):
    curl = args(rows, tool, "curl")
    assert curl[1] == "http://127.0.0.1:23333/v1/chat/completions"
    assert option(curl, "-H") == "Content-Type: application/json"
    body = json.loads(option(curl, "-d"))
    assert body == {"model": "my-assistant", "messages": [{"role": "user", "content": "你是谁？"}], "temperature": 0}
    odd = deploy.gpu_commands(MERGED, "qwen_chat", model_name="it's \"quoted\"")
    assert json.loads(option(args(odd, tool, "curl"), "-d"))["model"] == "it's \"quoted\""


def test_curl_command_for_any_server_and_streaming():
    plain = shlex.split(deploy.curl_command("http://127.0.0.1:8080", "What's 1+1? \"quote\" $HOME"))
    assert plain[:2] == ["curl", "http://127.0.0.1:8080/v1/chat/completions"] and "-N" not in plain
    assert json.loads(option(plain, "-d")) == {
        "messages": [{"role": "user", "content": "What's 1+1? \"quote\" $HOME"}], "temperature": 0}
    tricky = "$HOME `id` '\\"
    line = deploy.curl_command("http://h:1", tricky).replace("curl", "printf '%s\\0'", 1)  # bash's own argv
    argv = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True).stdout.split("\0")
    assert json.loads(option(argv, "-d"))["messages"][0]["content"] == tricky  # bash expanded nothing
    stream = shlex.split(deploy.curl_command("http://127.0.0.1:8080/v1/chat/completions/", stream=True, model="m"))
    assert stream[:3] == ["curl", "-N", "http://127.0.0.1:8080/v1/chat/completions"]  # -N: print events as they come
    assert json.loads(option(stream, "-d")) == {
        "model": "m", "messages": [{"role": "user", "content": "你是谁？"}], "temperature": 0, "stream": True}
    capped = shlex.split(deploy.curl_command("http://h:1", max_tokens=48))  # llama-cpp-python's default: the context
    assert json.loads(option(capped, "-d"))["max_tokens"] == 48


def test_modelscope_login_private_repo_and_upload(rows):
    assert args(rows, "ModelScope", "modelscope login") == ["modelscope", "login", "--token", "YOUR_TOKEN"]
    create = args(rows, "ModelScope", "modelscope create")
    assert create[2] == "OWNER/NAME" and option(create, "--visibility") == "private" and "--exist-ok" in create
    upload = args(rows, "ModelScope", "modelscope upload")
    assert upload[2:4] == ["OWNER/NAME", MERGED] and option(upload, "--repo-type") == "model"


@pytest.mark.parametrize("port", [0, 65536, -1, "23333", True, 8000.0])
def test_a_bad_port_is_refused(port):
    with pytest.raises(ValueError, match="port"):
        deploy.gpu_commands(MERGED, "qwen_chat", port=port)


def test_bad_template_host_or_repo_is_refused():
    with pytest.raises(ValueError, match="nope_chat"):
        deploy.gpu_commands(MERGED, "nope_chat")
    with pytest.raises(ValueError, match="OWNER/NAME"):
        deploy.gpu_commands(MERGED, "qwen_chat", repo_id="just-a-name")
    with pytest.raises(ValueError, match="host"):
        deploy.gpu_commands(MERGED, "qwen_chat", host=" ")


# ---- the Jinja chat template against xtuner's own text ----

def render(name: str, messages: list[dict], **tokens) -> str:
    """``chatml_jinja(name)`` rendered as transformers' ``apply_chat_template`` (and vLLM through it) renders it,
    checked against plain Jinja defaults too."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    source = deploy.chatml_jinja(name)
    text = _compile_jinja_template(source).render(messages=messages, add_generation_prompt=True, **tokens)
    assert jinja2.Environment().from_string(source).render(messages=messages, **tokens) == text
    return text


def xtuner_text(name: str, turns: list[tuple[str, str]], system: str = "", ask: str | None = None,
                bos: str = "", eos: str = "") -> str:
    """What xtuner trains on for ``turns``: its template_map_fn, joined as encode_fn joins the tokens (BOS when
    needed, input, output, EOS when need_eos_token, sep); with ``ask``, the prompt for one more question."""
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.utils import PROMPT_TEMPLATE

    conversation = [{"input": q, "output": a} for q, a in turns + ([(ask, "")] if ask is not None else [])]
    conversation[0]["system"] = system
    conversation = template_map_fn_factory(PROMPT_TEMPLATE[name])({"conversation": conversation})["conversation"]
    text, needs_bos = "", True
    for i, turn in enumerate(conversation):
        text += (bos if needs_bos else "") + turn["input"]
        if ask is not None and i == len(conversation) - 1:
            break
        text += turn["output"] + (eos if turn["need_eos_token"] else "") + turn["sep"]
        needs_bos = turn["need_eos_token"]
    return text


def messages(turns: list[tuple[str, str]], system: str = "", ask: str | None = None) -> list[dict]:
    out = [{"role": "system", "content": system}] if system else []
    for q, a in turns:
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return out + ([{"role": "user", "content": ask}] if ask is not None else [])


@pytest.mark.parametrize("name", ["qwen_chat", "internlm2_chat"])
@pytest.mark.parametrize("system", ["", "你是小智，由小明开发。"])
def test_one_question_renders_xtuners_prompt(name, system):
    from xtuner.utils import PROMPT_TEMPLATE

    t = PROMPT_TEMPLATE[name]
    want = (t["SYSTEM"].format(system=system) if system else "") + t["INSTRUCTION"].format(input="你是谁？", round=1)
    assert render(name, messages([], system, ask="你是谁？")) == want
    assert want == xtuner_text(name, [], system, ask="你是谁？")


@pytest.mark.parametrize("name", ["qwen_chat", "internlm2_chat", "llama3_chat", "chatglm2", "mistral", "deepseek_v2"])
def test_two_turns_render_what_xtuner_trains_on(name):
    turns, tokens = [("你是谁？", "我是小智。"), ("Who made you?", "小明 made me {{ not a template }}.")], {}
    if name in ("chatglm2", "mistral"):  # templates with no SUFFIX_AS_EOS: an EOS and a new BOS between turns
        tokens = {"bos_token": "<s>", "eos_token": "</s>"}
    want = xtuner_text(name, turns, "S", bos=tokens.get("bos_token", ""), eos=tokens.get("eos_token", ""))
    assert render(name, messages(turns, "S"), **tokens) == want
    # the next question: SEP after the last answer, then INSTRUCTION with round 3
    want = xtuner_text(name, turns, "S", ask="Q3", bos=tokens.get("bos_token", ""), eos=tokens.get("eos_token", ""))
    assert render(name, messages(turns, "S", ask="Q3"), **tokens) == want


def test_qwen_two_turns_spelled_out_and_a_bos_only_once():
    text = render("qwen_chat", messages([("Q1", "A1")], ask="Q2"))
    assert text == ("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                    "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n")
    with_bos = render("internlm2_chat", messages([("Q1", "A1")], ask="Q2"), bos_token="<s>", eos_token="</s>")
    assert with_bos == "<s>" + text and with_bos.count("<s>") == 1  # SUFFIX is the EOS: one BOS, as encode_fn
    assert xtuner_text("internlm2_chat", [("Q1", "A1")], ask="Q2", bos="<s>") == with_bos


def test_unknown_xtuner_template_is_refused():
    with pytest.raises(ValueError, match="'nope_chat'"):
        deploy.chatml_jinja("nope_chat")
    with pytest.raises(ValueError, match="'nope_chat'"):
        deploy.ollama_modelfile("m.gguf", "nope_chat")


# ---- the Ollama Modelfile ----

def test_modelfile_from_template_and_stops():
    text = deploy.ollama_modelfile("/root/my work/gguf/merged-q4_k_m.gguf", "qwen_chat", system="你是小智。")
    lines = text.splitlines()
    assert lines[0] == "FROM ./merged-q4_k_m.gguf"  # relative: the Modelfile sits next to the GGUF file
    assert [x for x in lines if x.startswith("PARAMETER stop")] == [
        'PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|endoftext|>"']
    assert "PARAMETER temperature 0" in lines and lines[-1] == 'SYSTEM """你是小智。"""'
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert template == (
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        '{{ range .Messages }}{{ if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
        '<|im_start|>assistant\n{{ else if eq .Role "assistant" }}{{ .Content }}<|im_end|>\n{{ end }}{{ end }}')


def test_modelfile_options_and_errors():
    text = deploy.ollama_modelfile("m.gguf", "internlm2_chat", temperature=None)
    assert "temperature" not in text and "SYSTEM" not in text
    assert [x for x in text.splitlines() if x.startswith("PARAMETER")] == ['PARAMETER stop "<|im_end|>"']
    for bad in ["model.bin", "my model.gguf"]:
        with pytest.raises(ValueError, match="gguf"):
            deploy.ollama_modelfile(bad, "qwen_chat")
    with pytest.raises(ValueError, match="chatglm2"):
        deploy.ollama_modelfile("m.gguf", "chatglm2")  # {round} has no Ollama equivalent here
