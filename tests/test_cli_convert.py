import os
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
