"""Notebook 08's servers: the streamlit web demo (driven by streamlit's AppTest) and the process handling around it;
the multi-turn prompt and the streamed answer the demo shows."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from helpers import chat, lab, serving

TEMPLATE = "qwen_chat"


@pytest.fixture(autouse=True)
def stop_servers():
    """Every server a test starts is stopped, also when the test fails."""
    yield
    serving.stop_all()


def test_multi_turn_prompt_is_what_xtuner_trains_on():
    """Earlier turns joined exactly as xtuner's template_map_fn + encode_fn join a two-turn conversation."""
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.utils import PROMPT_TEMPLATE

    example = {"conversation": [{"system": "你是小助手", "input": "你是谁？", "output": "我是小智。"},
                                {"input": "What is 2+2?", "output": "4"}]}
    turns = template_map_fn_factory(template=PROMPT_TEMPLATE[TEMPLATE])(example)["conversation"]
    trained = turns[0]["input"] + turns[0]["output"] + turns[0]["sep"] + turns[1]["input"]
    assert chat.build_prompt(TEMPLATE, "What is 2+2?", "你是小助手", history=[("你是谁？", "我是小智。")]) == trained
    assert chat.build_prompt(TEMPLATE, "你是谁？", "你是小助手", history=[]) == turns[0]["input"]


def test_streamed_answer_equals_the_greedy_answer(tiny_model):
    model = chat.load_chat_model(tiny_model)
    questions = ["你是谁？", "What is the capital of France?"]
    greedy = chat.generate_answers(model, questions, TEMPLATE, max_new_tokens=24)
    for question, expected in zip(questions, greedy):
        pieces = list(chat.stream_answer(model, chat.build_prompt(TEMPLATE, question), TEMPLATE, max_new_tokens=24))
        assert "".join(pieces).strip() == expected
        assert not any("<|im_end|>" in p for p in pieces)


def test_web_demo_answers_through_its_own_code(tiny_model, monkeypatch):
    """AppTest runs helpers/web_demo.py: the reply on the page is the greedy answer, and the turn is in the history;
    the kernel's matplotlib backend is left as it was (importing streamlit sets MPLBACKEND=Agg)."""
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    answer = serving.ask_web_demo(tiny_model, TEMPLATE, "你是谁？", max_new_tokens=24)
    assert os.environ["MPLBACKEND"] == "module://matplotlib_inline.backend_inline"
    expected = chat.generate_answers(chat.load_chat_model(tiny_model), ["你是谁？"], TEMPLATE, max_new_tokens=24)[0]
    assert answer == expected and answer


def test_web_demo_starts_on_loopback_prints_its_command_and_stops(tiny_model, tmp_path, capsys):
    demo = serving.start_web_demo(tiny_model, TEMPLATE, log_dir=tmp_path)
    shown = capsys.readouterr().out
    assert shown.startswith("$ ") and "--server.address 127.0.0.1" in shown and str(tiny_model) in shown
    assert demo.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(demo.url + "/_stcore/health", timeout=10) as reply:
        assert reply.read() == b"ok"
    port = int(demo.url.rsplit(":", 1)[1])
    assert not lab.port_free("127.0.0.1", port)
    with pytest.raises(OSError, match=f"Port {port} on 127.0.0.1 is taken"):
        serving.start_web_demo(tiny_model, TEMPLATE, port=port, log_dir=tmp_path)
    assert serving.stop_all() == ["web demo (streamlit)"]
    assert demo.process.poll() is not None
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=5)
    demo.stop()  # a second stop is harmless


def test_a_server_that_dies_shows_its_log(tmp_path):
    command = [sys.executable, "-c", "print('model file is corrupt'); raise SystemExit(3)"]
    with pytest.raises(serving.ServerError, match="exited with status 3(.|\n)*model file is corrupt"):
        serving._start("broken", command, "127.0.0.1", serving._free_port("127.0.0.1"), "/", tmp_path / "b.log", 30)
    assert serving._RUNNING == []


def test_a_server_that_never_answers_is_stopped(tmp_path):
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(serving.ServerError, match="did not answer"):
        serving._start("silent", command, "127.0.0.1", serving._free_port("127.0.0.1"), "/", tmp_path / "s.log", 2)
    assert serving._RUNNING == []


def test_half_written_merged_folders_are_refused(tiny_model, tmp_path):
    broken = tmp_path / "merged"
    shutil.copytree(tiny_model, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(FileNotFoundError, match="half-written: no weights(.|\n)*notebook 05"):
        serving.check_merged_dir(broken)
    with pytest.raises(FileNotFoundError, match="notebook 05"):
        serving.start_web_demo(broken, TEMPLATE)
    shutil.copytree(tiny_model, broken, dirs_exist_ok=True)
    (broken / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00002.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="shard model-00002.safetensors"):
        serving.check_merged_dir(broken)


def test_bad_ports_are_refused():
    with pytest.raises(ValueError, match="not a TCP port"):
        serving._address("127.0.0.1", 70000)


def test_access_hints_name_the_tunnel_on_the_platforms(monkeypatch, tmp_path):
    server = serving.Server("x", subprocess.Popen(["true"]), "http://127.0.0.1:8501", tmp_path / "x.log", "$ x")
    monkeypatch.setattr(serving.platforms, "detect_platform", lambda: "other")
    assert serving.access_hints(server) == ["在本机的浏览器打开 http://127.0.0.1:8501"]
    monkeypatch.setattr(serving.platforms, "detect_platform", lambda: "internstudio")
    assert "ssh -CNg -L 8501:127.0.0.1:8501" in serving.access_hints(server)[0]
    monkeypatch.setattr(serving.platforms, "detect_platform", lambda: "autodl")
    assert "6006" in serving.access_hints(server)[-1]


def test_a_server_dies_with_the_process_that_started_it(tmp_path):
    """A kernel killed outright (SIGKILL, no exit handlers) leaves no server behind."""
    script = ("import subprocess, sys, time; from helpers import serving\n"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True,"
              " preexec_fn=serving._die_with_parent)\n"
              "print(p.pid, flush=True); time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        pytest.fail("the child outlived its parent")
