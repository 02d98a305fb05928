import json

import pytest

from helpers import cli, data, formats, monitor, profiles, training, xconfig
from test_cli_convert import assert_printed_is_what_ran, xtuner_runs  # noqa: F401

LOG = ("11/24 11:19:20 - mmengine - INFO - Iter(train) [ 12/150]  lr: 1.9916e-03  eta: 0:00:04  "
       "time: 0.0340  data_time: 0.0021  grad_norm: 14.8846  loss: 5.1726")


def test_parse_iter_line():
    assert monitor._parse_iter_line(LOG) == {"iter": 12, "max_iters": 150, "lr": 1.9916e-03, "loss": 5.1726}
    assert monitor._parse_iter_line("11/24 - mmengine - INFO - Saving checkpoint at 50 iterations") is None


def test_checkpoints_sorted_by_iteration_files_and_folders(tmp_path):
    for name in ["iter_9.pth", "iter_100.pth", "iter_10.pth"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "iter_200.pth").mkdir()  # DeepSpeed writes a folder
    (tmp_path / "iter_x.pth").write_bytes(b"x")
    assert [p.name for p in training.list_checkpoints(tmp_path)] == [
        "iter_9.pth", "iter_10.pth", "iter_100.pth", "iter_200.pth"]
    assert training.latest_checkpoint(tmp_path).name == "iter_200.pth"


def test_latest_checkpoint_follows_last_checkpoint_file(tmp_path):
    (tmp_path / "iter_50.pth").mkdir()
    (tmp_path / "iter_20.pth").write_bytes(b"x")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_50.pth"))
    assert training.latest_checkpoint(tmp_path) == tmp_path / "iter_50.pth"


def test_missing_checkpoint_is_explained(tmp_path):
    with pytest.raises(training.CheckpointNotFoundError, match="Run notebook 04"):
        training.latest_checkpoint(tmp_path)
    with pytest.raises(training.CheckpointNotFoundError, match=str(tmp_path / "nope")):
        training.latest_checkpoint(tmp_path / "nope")


def _scalars(run_dir, iters, loss0):
    (run_dir / "vis_data").mkdir(parents=True)
    rows = [{"iter": i, "loss": loss0 - i * 0.1, "lr": 1e-4, "time": 0.5} for i in iters]
    (run_dir / "vis_data" / "scalars.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_scalars_of_a_resumed_run_continue(tmp_path):
    _scalars(tmp_path / "20261124_100000", range(1, 6), 5.0)
    _scalars(tmp_path / "20261124_110000", range(6, 11), 5.0)
    rows = monitor.read_scalars(tmp_path)
    assert [r["iter"] for r in rows] == list(range(1, 11))
    summary = monitor.loss_summary(rows, window=2)
    assert summary["iterations"] == 10 and summary["final_loss"] < summary["first_loss"]
    assert summary["seconds_per_iter"] == 0.5
    png = tmp_path / "loss.png"
    monitor.plot_loss(rows, png)
    assert png.stat().st_size > 1000


def test_no_scalars_yet(tmp_path):
    with pytest.raises(FileNotFoundError, match="has not logged anything yet"):
        monitor.read_scalars(tmp_path)


def test_train_refuses_to_replace_checkpoints(tmp_path):
    (tmp_path / "iter_5.pth").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        training.train(tmp_path / "cfg.py", tmp_path)
    assert (tmp_path / "iter_5.pth").read_bytes() == b"x"


def test_resume_command_names_the_checkpoint(tmp_path):
    (tmp_path / "iter_5.pth").write_bytes(b"x")
    args = training.train_args("c.py", tmp_path, deepspeed="deepspeed_zero2", resume=True)
    assert args == ["train", "c.py", "--work-dir", str(tmp_path), "--deepspeed", "deepspeed_zero2",
                    "--resume", str(tmp_path / "iter_5.pth")]


def test_failed_training_shows_the_real_traceback(tmp_path, tiny_model):
    """xtuner exits 0 after a crash; the helper must still fail, with the traceback."""
    copied = xconfig.copy_config("internlm2_chat_1_8b_qlora_alpaca_e3", tmp_path)
    missing = tmp_path / "missing.jsonl"
    edits = xconfig.course_edits(profiles.get_profile("tiny"), tiny_model, missing, "conversation", ["hi"])
    config = xconfig.write_edited(copied, tmp_path / "course_tiny.py", edits)
    with pytest.raises(cli.XtunerError, match="did not produce a new checkpoint") as err:
        training.train(config, tmp_path / "work", progress=False)
    assert "Traceback (most recent call last)" in str(err.value)
    assert "missing.jsonl" in str(err.value) or "FileNotFoundError" in str(err.value)


def test_course_hook_answers_once_per_checkpoint_and_not_again_on_resume(tmp_path, tiny_model, capsys,
                                                                          xtuner_runs):
    """The cpu/tiny configs' hook: answers before training, at each checkpoint, never twice with the same weights.
    Both runs print the xtuner train command they ran; the resumed one with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1."""
    copied = xconfig.copy_config("internlm2_chat_1_8b_qlora_alpaca_e3", tmp_path)
    train_file = formats.write_jsonl(data.build_self_cognition("小智", "书生学员", 8), tmp_path / "train.jsonl")
    prof = profiles.get_profile("tiny", max_iters=4, save_steps=2, evaluation_freq=2, warmup_iters=1)
    questions = ["你是谁？", "What is the capital of France?"]
    edits = xconfig.course_edits(prof, tiny_model, train_file, "conversation", questions)
    config = xconfig.write_edited(copied, tmp_path / "course_tiny.py", edits)
    work = tmp_path / "work"
    first = training.train(config, work, progress=False, stop_at=2)
    resumed = training.train(config, work, progress=False, resume=True)
    assert first.stopped and first.checkpoint.name == "iter_2.pth" and resumed.checkpoint.name == "iter_4.pth"
    assert_printed_is_what_ran(capsys.readouterr().out, xtuner_runs)
    assert first.run.shown == f"xtuner train {config} --work-dir {work}"
    assert resumed.run.shown == f"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 {first.run.shown} --resume {work / 'iter_2.pth'}"
    # first run: before training and at iteration 2; resumed run: only at iteration 4 (its checkpoint)
    assert first.run.output.count("Sample output:") == 4 and resumed.run.output.count("Sample output:") == 2
    assert "skipped (resumed at iteration 2" in resumed.run.output
    assert "after_train in EvaluateChatHook: skipped" in resumed.run.output
    saved = monitor.eval_outputs(work)
    assert list(saved) == [2, 4]  # at each checkpoint, by steps trained: step 2 (first run), step 4 (resumed run)
    # the batch keeps each question with its own answer, padding stripped, in the order of evaluation_inputs
    assert saved[4].index(questions[0]) < saved[4].index(questions[1]) and "<|endoftext|><|endoftext|>" not in saved[4]


def test_course_hook_answer_only_at_end_answers_once(tmp_path, tiny_model):
    """07's no-mix run: no answers before training or on the way, one round after the last iteration, and it trains."""
    copied = xconfig.copy_config("internlm2_chat_1_8b_qlora_alpaca_e3", tmp_path)
    train_file = formats.write_jsonl(data.build_self_cognition("小智", "书生学员", 8), tmp_path / "train.jsonl")
    prof = profiles.get_profile("tiny", max_iters=4, save_steps=2, evaluation_freq=2, warmup_iters=1)
    edits = xconfig.course_edits(prof, tiny_model, train_file, "conversation", ["你是谁？", "1+1=?"])
    config = xconfig.write_edited(copied, tmp_path / "course_tiny.py", edits)
    quiet = xconfig.write_edited(config, tmp_path / "quiet.py", xconfig.data_edits(train_file, answer_only_at_end=True))
    run = training.train(quiet, tmp_path / "work", progress=False)
    assert run.run.output.count("Sample output:") == 2 and "skipped (answer_before_train=False)" in run.run.output
    assert [p.name for p in training.list_checkpoints(tmp_path / "work")] == ["iter_4.pth"]
    assert list(monitor.eval_outputs(tmp_path / "work")) == [4] and len(run.losses) == 4


def _log_iteration(work, it, total):
    with open(work / "xtuner_train.log", "a") as log:
        log.write(LOG.replace("[ 12/150]", f"[{it:3d}/{total}]") + "\n")


def test_resume_point_after_a_stop_or_an_interrupt_but_not_after_the_end(tmp_path):
    """04 section 4 resumes when the newest checkpoint comes before the last iteration (stop_at, or ■ in exercise 3)."""
    assert training.resume_point(tmp_path) is None  # nothing to resume from
    (tmp_path / "iter_50.pth").write_bytes(b"x")
    for it in (50, 51, 52):  # interrupted at iteration 52 of 150
        _log_iteration(tmp_path, it, 150)
    assert training.resume_point(tmp_path) == 50
    (tmp_path / "iter_150.pth").write_bytes(b"x")
    _log_iteration(tmp_path, 150, 150)
    assert training.resume_point(tmp_path) is None  # finished
