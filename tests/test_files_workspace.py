import json
import os
import subprocess

import pytest

from helpers import files, workspace


def test_atomic_write_refuses_to_clobber(tmp_path):
    target = tmp_path / "out.txt"
    files.atomic_write_text(target, "mine")
    with pytest.raises(files.OutputExistsError, match="overwrite=True"):
        files.atomic_write_text(target, "theirs")
    assert target.read_text() == "mine"
    files.atomic_write_text(target, "new", overwrite=True)
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind


def test_replace_dir_refuses_to_clobber(tmp_path):
    final, tmp = tmp_path / "final", tmp_path / "tmp"
    final.mkdir(); (final / "keep").write_text("x")
    tmp.mkdir(); (tmp / "new").write_text("y")
    with pytest.raises(files.OutputExistsError):
        files.replace_dir(tmp, final)
    assert (final / "keep").exists()
    files.replace_dir(tmp, final, overwrite=True)
    assert [p.name for p in final.iterdir()] == ["new"] and not tmp.exists()


def test_workspace_layout_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv(workspace.ENV_VAR, str(tmp_path / "w"))
    ws = workspace.get_workspace()
    assert ws.root == (tmp_path / "w").resolve()
    assert all((ws.root / name).is_dir() for name in workspace.LAYOUT)
    assert ws.data == ws.root / "data" and ws.merged == ws.root / "merged"
    with pytest.raises(AttributeError):
        ws.nonsense


def test_workspace_has_one_property_per_layout_folder(ws):
    properties = {n for n, v in vars(workspace.Workspace).items() if isinstance(v, property)} - {"state_file"}
    assert properties == set(workspace.LAYOUT)
    assert all(getattr(ws, name) == ws.root / name for name in workspace.LAYOUT)


def test_state_round_trip_and_missing_key(ws):
    ws.update_state(profile="tiny", base_model=ws.models / "m")
    assert ws.recall("base_model", "00") == str(ws.models / "m")
    assert json.loads(ws.state_file.read_text())["profile"] == "tiny"
    with pytest.raises(LookupError, match="run notebook 03 first"):
        ws.recall("config", "03")


def test_clean_deletes_the_working_folder_in_use_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(workspace.ENV_VAR, str(tmp_path / "w"))
    workspace.get_workspace().update_state(profile="tiny")
    assert workspace.main(["clean"]) == 0
    assert not (tmp_path / "w").exists() and f"deleted the working folder {tmp_path / 'w'}" in capsys.readouterr().out
    assert workspace.main(["clean"]) == 0 and "nothing to delete" in capsys.readouterr().out


def test_clean_refuses_a_folder_the_course_did_not_make(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    monkeypatch.setenv(workspace.ENV_VAR, str(tmp_path / "mine"))
    assert workspace.main(["clean"]) == 1
    assert (tmp_path / "mine" / "thesis.tex").exists() and "thesis.tex" in capsys.readouterr().err


def test_make_clean_uses_the_same_folder(tmp_path):
    target = tmp_path / "ws"
    workspace.get_workspace(target)
    out = subprocess.run(["make", "-s", "clean"], cwd=workspace.REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, workspace.ENV_VAR: str(target)}, check=True).stdout
    assert not target.exists() and str(target) in out
