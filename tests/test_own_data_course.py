"""Notebook 02's promise: set one parameter (data_file) in 03 and the course trains on your own data."""

import json

from helpers import course, formats, validation, workspace, xconfig


def test_own_data_trains_through_notebooks_03_and_04(tmp_path):
    root = str(tmp_path / "ws")
    course.run_course("tiny", root, {}, only=["00", "01", "02"])
    ws = workspace.get_workspace(root)
    state = ws.read_state()
    own = state["own_data_file"]
    assert own == str(ws.data / "own_data_train.jsonl") and state["data_file"] != own  # the default course is untouched
    records = formats.read_jsonl(own)
    assert validation.validate_file(own, None) == "conversation" and len(records) > 20
    assert records[0]["conversation"][0]["system"] == state["own_data_system"]

    course.run_course("tiny", root, {"data_file": own, "max_iters": 60, "resume_demo": False},
                      only=["03", "04"])  # one short plain run
    state = ws.read_state()
    cfg = xconfig.load_config(state["config"])
    assert cfg.train_dataloader.dataset.dataset.data_files == {"train": own}
    assert cfg.train_dataloader.dataset.dataset_map_fn is None
    checkpoint = ws.root / state["checkpoint"]
    assert checkpoint.is_file() and checkpoint.name.startswith("iter_")
    summary = json.loads((ws.reports / "training_summary.json").read_text())
    assert summary["final_loss"] < summary["first_loss"]
    log = "".join(p.read_text(encoding="utf-8", errors="replace") for p in ws.root.rglob("xtuner_train.log"))
    assert "KeyError" not in log and "职业规划" in log  # the training samples shown in the log are the converted ones
