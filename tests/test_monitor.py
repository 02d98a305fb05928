"""The training monitor follows xtuner's real log format; stop and resume; multi-GPU commands."""

import pytest

from helpers import formats, monitor, training

ITER = "\x1b[4m\x1b[97mINFO\x1b[0m"  # mmengine colours its level names


def log(i, total=10, loss=1.0):
    return (f"11/24 11:40:0{i % 10} - mmengine - {ITER} - Iter(train) [{i:>2}/{total}]  lr: 1.0e-04  eta: 0:00:10  "
            f"time: 0.5  data_time: 0.01  grad_norm: 1.0  loss: {loss:.4f}")


def test_monitor_collects_iterations_and_samples():
    mon = monitor.TrainingMonitor(progress=False, live=False)
    for line in [log(1, loss=2.0), f"11/24 11:40:01 - mmengine - {ITER} - Sample output:", "<|im_start|>user",
                 "你是谁？<|im_end|>", "<|im_start|>assistant", "我是小智。<|im_end|>", "", log(2, loss=1.5)]:
        mon(line)
    mon.close()
    assert [r["iter"] for r in mon.rows] == [1, 2] and mon.rows[-1]["loss"] == 1.5
    assert mon.samples == ["<|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n我是小智。<|im_end|>"]


def test_monitor_stops_after_the_checkpoint_iteration():
    mon = monitor.TrainingMonitor(progress=False, live=False, stop_at=5)
    for i in range(1, 6):
        mon(log(i))
    with pytest.raises(monitor.StopTraining):
        mon(log(6))
    assert mon.rows[-1]["iter"] == 5


def test_sample_at_the_end_of_output_is_kept():
    mon = monitor.TrainingMonitor(progress=False, live=False)
    mon(f"11/24 11:40:01 - mmengine - {ITER} - Sample output:")
    mon("last answer")
    mon.close()
    assert mon.samples == ["last answer"]


@pytest.fixture
def widget_bar(monkeypatch):
    """Make the monitor use tqdm's notebook widget (what a learner sees in Jupyter), without a kernel."""
    from functools import partial

    from tqdm.notebook import tqdm as notebook_tqdm

    monkeypatch.setattr("tqdm.auto.tqdm", partial(notebook_tqdm, display=False))
    return lambda mon: mon.bar.container.children[1]  # the ipywidgets.IntProgress


def saved(i):
    return f"11/24 11:40:09 - mmengine - {ITER} - Saving checkpoint at {i} iterations"


def test_bar_is_sized_by_the_log_and_advances_by_iterations(widget_bar):
    mon = monitor.TrainingMonitor(live=False)
    for i in range(1, 9):
        mon(log(i))
        assert (widget_bar(mon).value, widget_bar(mon).max) == (i, 10)
    assert widget_bar(mon).layout.width is None  # not the 20 px square of a bar without a total
    mon(saved(10))  # the last iteration is saved even when it is not logged
    mon.close()
    assert widget_bar(mon).value == 10 and widget_bar(mon).bar_style == "success"


def test_resumed_run_starts_the_bar_at_its_checkpoint(widget_bar):
    mon = monitor.TrainingMonitor(live=False)
    mon(log(6))
    assert (mon.bar.n, mon.bar.initial, widget_bar(mon).value, widget_bar(mon).max) == (6, 5, 6, 10)


def test_planned_stop_is_not_shown_as_a_failure(widget_bar):
    mon = monitor.TrainingMonitor(live=False, stop_at=5)
    with pytest.raises(monitor.StopTraining):
        for i in range(1, 7):
            mon(log(i))
    mon.close()
    assert widget_bar(mon).bar_style == "info" and widget_bar(mon).value == 5
    assert "planned stop, checkpoint saved" in mon.bar.container.children[0].value.replace("\u2007", " ")


def test_run_that_ends_early_keeps_the_error_style(widget_bar):
    mon = monitor.TrainingMonitor(live=False)
    for i in range(1, 6):
        mon(log(i))
    mon.close()
    assert widget_bar(mon).bar_style == "danger"


def test_single_node_command():
    assert training.distributed_commands("c.py", "w", gpus_per_node=8) == [
        "NPROC_PER_NODE=8 xtuner train c.py --work-dir w --deepspeed deepspeed_zero2"]


def test_multi_node_commands_one_per_node():
    commands = training.distributed_commands("c.py", "w", gpus_per_node=4, nnodes=2, master_addr="10.0.0.1",
                                             deepspeed="deepspeed_zero3_offload", port=29600)
    assert commands == [
        f"NPROC_PER_NODE=4 NNODES=2 NODE_RANK={rank} ADDR=10.0.0.1 PORT=29600 "
        "xtuner train c.py --work-dir w --deepspeed deepspeed_zero3_offload" for rank in (0, 1)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(gpus_per_node=8, deepspeed="zero2"), "xtuner ships deepspeed_zero1"),
    (dict(gpus_per_node=0), "at least 1"),
    (dict(gpus_per_node=8, nnodes=2), "needs master_addr"),
])
def test_bad_distributed_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.distributed_commands("c.py", "w", **kwargs)


def test_stop_and_resume_for_real(tmp_path, tiny_model):
    """Stop a real tiny run after its first checkpoint, resume it, and get a continuous loss curve."""
    from helpers import data, profiles, xconfig

    prof = profiles.get_profile("tiny", max_iters=20, save_steps=10, evaluation_freq=20, max_new_tokens=4)
    train_file = formats.write_jsonl(data.build_self_cognition("小智", "书生学员", 40), tmp_path / "d.jsonl")
    copied = xconfig.copy_config(prof.base_config, tmp_path)
    config = xconfig.write_edited(copied, tmp_path / "c.py",
                                  xconfig.course_edits(prof, tiny_model, train_file, "conversation", ["hi"]))
    first = training.train(config, tmp_path / "w", progress=False, stop_at=10)
    assert first.stopped and first.checkpoint.name == "iter_10.pth" and first.run.stopped
    assert first.peak_rss_gb > 0.2  # measured for this run alone
    assert not (tmp_path / "w" / "iter_20.pth").exists()
    second = training.train(config, tmp_path / "w", progress=False, resume=True)
    assert not second.stopped and second.checkpoint.name == "iter_20.pth"
    assert monitor.read_scalars(tmp_path / "w", last_run_only=True)[0]["iter"] == 11
    assert [r["iter"] for r in monitor.read_scalars(tmp_path / "w")] == list(range(1, 21))
    assert second.peak_rss_gb > 0.2


def test_plot_rewards_draws_the_logged_rewards(tmp_path):
    rows = [{"iter": i, "loss": 0.69 - 0.03 * i, "chosen_rewards": 0.1 * i, "rejected_rewards": -0.1 * i,
             "reward_margin": 0.2 * i, "reward_acc": float(i > 2)} for i in range(1, 11)]
    fig = monitor.plot_rewards(rows, tmp_path / "r.png")
    rewards, acc = fig.axes
    assert [line.get_label() for line in rewards.get_lines()[:3]] == ["chosen_rewards", "rejected_rewards", "reward_margin"]
    assert list(acc.get_lines()[0].get_ydata())[:4] == pytest.approx([0.0, 0.0, 1 / 3, 0.5]) and acc.get_lines()[0].get_ydata()[-1] == 1.0
    assert (tmp_path / "r.png").stat().st_size > 1000
