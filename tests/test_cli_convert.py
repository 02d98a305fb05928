import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli, convert, files

TRACE = """some log
Traceback (most recent call last):
  File "train.py", line 3, in <module>
    main()
KeyError: 'messages'
more log after
"""


def test_find_traceback():
    assert cli._find_traceback(TRACE).splitlines()[-1] == "KeyError: 'messages'"
    assert cli._find_traceback("all fine") is None


def test_xtuner_env_puts_this_python_first():
    env = cli.xtuner_env()
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["MKL_THREADING_LAYER"] == "GNU" and env["MKL_SERVICE_FORCE_INTEL"] == "1"


def test_show_is_what_a_learner_types():
    assert cli.show(cli.xtuner_command("train", "my cfg.py")) == "xtuner train 'my cfg.py'"
    assert cli.show(["/v/bin/xtuner", "chat", "m"], {"A": "1", "B": "x y"}, "你是谁？\n\nEXIT\n\n") == (
        "printf '你是谁？\\n\\nEXIT\\n\\n' | A=1 B='x y' xtuner chat m")


@pytest.fixture
def xtuner_runs(monkeypatch) -> list[tuple[cli.XtunerRun, dict, str | None]]:
    """Every real xtuner run a helper makes, kept with the variables and the input the helper gave ``run_xtuner``."""
    runs, real_run = [], cli.run_xtuner

    def run_and_keep(*args, **kwargs):
        runs.append((real_run(*args, **kwargs), kwargs.get("env") or {}, kwargs.get("input_text")))
        return runs[-1][0]

    monkeypatch.setattr(cli, "run_xtuner", run_and_keep)
    return runs


def printed_commands(out: str) -> list[str]:
    """The command lines a helper printed (the lines starting with "$ ")."""
    return [line[2:] for line in out.splitlines() if line.startswith("$ ")]


def read_as_bash(line: str) -> tuple[str | None, dict, list[str]]:
    """A printed line split as bash splits it: what its ``printf '...' |`` pipes in (printf really run; None
    without one), its ``VAR=value`` settings and the command's words."""
    words, piped, variables = shlex.split(line), None, {}
    if words[0] == "printf":
        assert words[2] == "|", line
        printf = subprocess.run(["bash", "-c", shlex.join(words[:2])], capture_output=True, check=True)
        piped, words = printf.stdout.decode("utf-8"), words[3:]
    while re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0], flags=re.S):
        name, value = words.pop(0).split("=", 1)
        variables[name] = value
    return piped, variables, words


def assert_printed_is_what_ran(out: str, runs: list) -> None:
    """Each printed "$ " line is the run behind it: xtuner with the same arguments, the variables the helper set,
    and its printf pipes in the helper's input byte for byte."""
    printed = printed_commands(out)
    assert len(printed) == len(runs), out
    for line, (run, env, input_text) in zip(printed, runs):
        assert line == run.shown
        piped, variables, words = read_as_bash(line)
        assert Path(run.command[0]).name == "xtuner" and words == ["xtuner", *run.command[1:]]
        assert variables == env and piped == input_text


def test_run_xtuner_can_stay_quiet_and_its_line_reruns_in_bash(capsys):
    """show_command=False prints nothing; the line it would print, typed into bash, gives the same output."""
    run = cli.run_xtuner("list-cfg", "-p", "internlm2_chat_1_8b", env={"PYTHONWARNINGS": "ignore"}, show_command=False)
    assert capsys.readouterr().out == "" and run.shown == "PYTHONWARNINGS=ignore xtuner list-cfg -p internlm2_chat_1_8b"
    assert "internlm2_chat_1_8b_qlora_alpaca_e3" in run.output
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    typed = subprocess.run(["bash", "-c", run.shown], capture_output=True, text=True, env=dict(os.environ, PATH=path))
    assert typed.returncode == 0 and typed.stdout + typed.stderr == run.output


def test_pth_to_hf_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="Run notebook 04 first"):
        convert.pth_to_hf(tmp_path / "c.py", tmp_path / "iter_1.pth", tmp_path / "hf")


def test_merge_missing_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="base model folder"):
        convert.merge(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged")


def test_merge_refuses_to_clobber(tmp_path, tiny_model):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "merged").mkdir()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        convert.merge(tiny_model, tmp_path / "adapter", tmp_path / "merged")


def test_disk_check_before_writing(tmp_path):
    with pytest.raises(convert.DiskSpaceError, match="merge needs about"):
        convert._check_free_disk(tmp_path, files.free_disk_gb(tmp_path) + 1000, "merge")


def test_failed_conversion_prints_what_ran_and_leaves_nothing_behind(tmp_path, capsys, xtuner_runs):
    """A real pth_to_hf on a broken checkpoint: xtuner exits 0 after its traceback, the helper fails with it. It
    printed what it ran: the MKL variables, and the temporary folder beside the output, named in a line above."""
    bogus = tmp_path / "iter_1.pth"
    bogus.write_bytes(b"not a checkpoint")
    (tmp_path / "c.py").write_text("x = 1\n")
    with pytest.raises(cli.XtunerError, match="did not produce a LoRA adapter") as err:
        convert.pth_to_hf(tmp_path / "c.py", bogus, tmp_path / "hf")
    [(run, env, _)] = xtuner_runs
    assert run.returncode == 0 and run.traceback and run.traceback in str(err.value)  # xtuner's status is not trusted
    out = capsys.readouterr().out
    assert_printed_is_what_ran(out, xtuner_runs)
    assert env == cli.MKL_ENV and run.shown.startswith("MKL_SERVICE_FORCE_INTEL=1 MKL_THREADING_LAYER=GNU xtuner convert ")
    temporary = Path(run.command[5])
    assert run.command[2:5] == ["pth_to_hf", str(tmp_path / "c.py"), str(bogus)] and temporary.parent == tmp_path
    assert temporary.name.startswith(".hf.") and f"临时文件夹 {temporary.name}/，成功后改名为 hf/" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.py", "iter_1.pth"]


def test_memory_sampler_measures_one_process_group_only(tmp_path):
    """A child holding ~300 MB is measured as such; a later small one is not credited with it."""
    def peak_of(code: str) -> float:
        proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        with cli.MemorySampler(proc.pid, every=0.1) as memory:
            proc.wait()
        return memory.peak_gb

    big = peak_of("import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)")
    small = peak_of("import time; time.sleep(1.0)")
    assert 0.3 <= big < 0.5 and small < 0.05


def test_changed_weights_finds_exactly_the_weights_that_moved(tmp_path, tiny_model):
    """A float16 copy of the tiny model (as merge saves it), sharded, with one projection shifted: only it changed."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, torch_dtype=torch.float16)
    untouched = convert.changed_weights(tiny_model, tiny_model)
    assert untouched and not any(untouched.values())
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight += 0.01
    model.save_pretrained(tmp_path / "copy", max_shard_size="200KB")
    assert (tmp_path / "copy" / "model.safetensors.index.json").is_file()
    changed = convert.changed_weights(tiny_model, tmp_path / "copy")
    assert [n for n, moved in changed.items() if moved] == ["model.layers.0.self_attn.q_proj.weight"]
    assert set(changed) == set(untouched)
