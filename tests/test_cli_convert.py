import json
import os
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


# A stand-in for xtuner: records its arguments, the variables of RECORDED and its input; answers `chat` the way
# xtuner chat does (a ">>> " prompt before each answer, "Log: Exit!" at EXIT); `train` writes a checkpoint.
RECORDED = ("MKL_SERVICE_FORCE_INTEL", "MKL_THREADING_LAYER", "PYTHONWARNINGS", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
FAKE_XTUNER = """#!{python}
import json, os, sys
from pathlib import Path
args, stdin = sys.argv[1:], sys.stdin.read()
with open(os.environ["FAKE_XTUNER_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"args": args, "stdin": stdin, "env": {{k: os.environ.get(k) for k in {recorded!r}}}}}) + "\\n")
if args[0] == "chat":
    for question in stdin.split("\\n\\n")[:-1]:
        print("double enter to end input (EXIT: exit chat, RESET: reset history) >>> ", end="")
        print("Log: Exit!" if question == "EXIT" else "answer to " + question)
if "--work-dir" in args:
    Path(args[args.index("--work-dir") + 1], "iter_1.pth").write_bytes(b"checkpoint")
"""


@pytest.fixture
def fake_xtuner(tmp_path, monkeypatch) -> Path:
    """Every helper runs the fake xtuner; returns the file its runs are recorded in, one JSON line each."""
    fake = tmp_path / "fakebin" / "xtuner"
    fake.parent.mkdir()
    fake.write_text(FAKE_XTUNER.format(python=sys.executable, recorded=RECORDED))
    fake.chmod(0o755)
    record = tmp_path / "fake_xtuner.jsonl"
    monkeypatch.setenv("FAKE_XTUNER_LOG", str(record))
    for name in RECORDED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "xtuner_command", lambda *args: [str(fake), *map(str, args)])
    return record


def recorded_runs(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]


def printed_commands(out: str) -> list[str]:
    """The command lines a helper printed (the lines starting with "$ ")."""
    return [line[2:] for line in out.splitlines() if line.startswith("$ ")]


def assert_printed_is_what_ran(line: str, record: Path) -> dict:
    """Type the printed line into bash, as a learner would: the fake xtuner must get the same arguments, input and
    shown variables as from the helper (its newest recorded run); returns that run."""
    ran = recorded_runs(record)[-1]
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(cli.xtuner_command()[0]).parent), os.environ["PATH"]]))
    subprocess.run(["bash", "-c", line], env=env, check=True, stdout=subprocess.DEVNULL)
    typed = recorded_runs(record)[-1]
    assert typed["args"] == ran["args"] and typed["stdin"] == ran["stdin"]
    shown = [name for name in RECORDED if f"{name}=" in line]
    assert {k: typed["env"][k] for k in shown} == {k: ran["env"][k] for k in shown}
    return ran


def test_run_xtuner_prints_the_command_it_runs(fake_xtuner, capsys):
    text = "it's 100% \\ \"fine\"?\n\n你是谁？\n\nEXIT\n\n"  # quotes, %, a backslash: printf must not change them
    run = cli.run_xtuner("chat", "my model", input_text=text, env={"PYTHONWARNINGS": "ignore"})
    assert printed_commands(capsys.readouterr().out) == [run.shown]
    assert run.shown.startswith("printf ") and " | PYTHONWARNINGS=ignore xtuner chat 'my model'" in run.shown
    ran = assert_printed_is_what_ran(run.shown, fake_xtuner)
    assert ran["args"] == ["chat", "my model"] and ran["stdin"] == text and ran["env"]["PYTHONWARNINGS"] == "ignore"


def test_run_xtuner_can_stay_quiet(fake_xtuner, capsys):
    run = cli.run_xtuner("list-cfg", show_command=False)
    assert capsys.readouterr().out == "" and run.shown == "xtuner list-cfg"


def test_conversions_print_what_they_run_and_the_temporary_folder(fake_xtuner, capsys, tmp_path, tiny_model):
    """pth_to_hf and merge write into a temporary folder beside the output: the printed command names it, a line
    above says so, and the MKL variables they run with are shown."""
    (tmp_path / "c.py").write_text("x = 1\n")
    (tmp_path / "iter_1.pth").write_bytes(b"x")
    (tmp_path / "adapter").mkdir()
    calls = [lambda: convert.pth_to_hf(tmp_path / "c.py", tmp_path / "iter_1.pth", tmp_path / "hf_adapter"),
             lambda: convert.merge(tiny_model, tmp_path / "adapter", tmp_path / "merged")]
    for call, out_name in zip(calls, ["hf_adapter", "merged"]):
        with pytest.raises(cli.XtunerError, match="MKL_THREADING_LAYER=GNU xtuner convert"):
            call()  # the fake writes nothing
        out = capsys.readouterr().out
        [line] = printed_commands(out)
        assert line.startswith("MKL_SERVICE_FORCE_INTEL=1 MKL_THREADING_LAYER=GNU xtuner convert ")
        ran = assert_printed_is_what_ran(line, fake_xtuner)
        temporary = Path(ran["args"][4])
        assert temporary.parent == tmp_path and temporary.name.startswith(f".{out_name}.")
        assert f"临时文件夹 {temporary.name}/，成功后改名为 {out_name}/" in out
        assert ran["env"]["MKL_THREADING_LAYER"] == "GNU" and not temporary.exists()


def test_xtuner_exit_status_is_not_trusted(tmp_path):
    run = cli.run_xtuner("convert", "pth_to_hf", "nope.py", "nope.pth", str(tmp_path / "out"))
    assert run.returncode == 0 and run.traceback  # xtuner reports success after a crash
    with pytest.raises(cli.XtunerError, match="did not produce the adapter"):
        cli.require(False, run, "the adapter")


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


def test_failed_conversion_leaves_nothing_behind(tmp_path, tiny_model):
    bogus = tmp_path / "iter_1.pth"
    bogus.write_bytes(b"not a checkpoint")
    (tmp_path / "c.py").write_text("x = 1\n")
    with pytest.raises(cli.XtunerError, match="did not produce a LoRA adapter"):
        convert.pth_to_hf(tmp_path / "c.py", bogus, tmp_path / "hf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.py", "iter_1.pth"]


def test_memory_sampler_measures_one_process_group_only(tmp_path):
    """A child holding ~300 MB is measured as such; a later small one is not credited with it."""
    import subprocess

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
