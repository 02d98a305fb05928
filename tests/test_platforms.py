"""The GPU platforms, simulated on this machine: the README's quick start keeps each platform's torch.

scripts/simulate_platforms.py builds each platform (its folders under a fake root, a real interpreter of its Python
version, its torch) and runs the README's commands there for real; see its docstring for what is a stand-in.
"""

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

from helpers import install, platforms

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("simulate_platforms", REPO / "scripts" / "simulate_platforms.py")
sim = sys.modules["simulate_platforms"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sim)
SCENARIOS = {s.name: s for s in sim.SCENARIOS}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Run every scenario once, two at a time (about 3 minutes with a warm pip cache); results by name."""
    jobs = []
    for name, scenario in SCENARIOS.items():
        if sim.find_python(scenario.python) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI must simulate {name}: no Python {scenario.python} on this machine")
            continue
        jobs.append((scenario, tmp_path_factory.mktemp(name)))
    results = {scenario.name: r for (scenario, _), r in zip(jobs, sim.simulate_all(jobs))}
    print(json.dumps([sim.summary_row(r) for r in results.values()], ensure_ascii=False, indent=1))
    return results


def result_of(simulated, name):
    if name not in simulated:
        pytest.skip(f"no Python {SCENARIOS[name].python} on this machine")
    return simulated[name]


def assert_installed_as_planned(r, torch, bitsandbytes):
    install_step = r["steps"][0]
    assert install_step["exit"] == 0, install_step["output"][-3000:]
    assert r["files_before"] == r["files_after"], "the platform's torch/numpy files changed"
    assert r["after"]["torch"] == torch == r["plan"]["torch"]
    assert r["after"]["bitsandbytes"] == bitsandbytes == r["plan"]["bitsandbytes"]
    assert f"bitsandbytes {bitsandbytes}" in install_step["output"].split("== xtuner")[0]  # printed before installing
    assert [line for line in r["pip_check"] if not line.startswith(install.KNOWN_PIP_CHECK)] == []
    assert r["kernel_python"] == r["venv_python"]


def preflight(r) -> dict:
    rows = sim.preflight_rows(r["steps"][1]["output"])
    return {re.match(r"\[(\w+)\]\s+(.+?)\s{2,}", row).group(2): row for row in rows}


def test_internstudio_keeps_torch_2_1_and_uses_xtuners_bitsandbytes(simulated):
    r = result_of(simulated, "internstudio")
    assert_installed_as_planned(r, "2.1.2", "0.45.0")
    assert r["after"]["numpy"].startswith("1.") and r["after"]["torchvision"] == "0.16.2"
    checks = preflight(r)
    for name in ("python", "install plan", "pinned versions", "jupyter kernel", "disk", "platform"):
        assert checks[name].startswith("[PASS]"), checks[name]
    assert "is in the shared folder" in checks["platform"]
    assert checks["torch"].startswith("[FAIL]") and "no GPU on this machine" in checks["torch"]  # this machine


def test_autodl_keeps_torch_2_4_installs_matching_torchvision_and_uses_the_data_disk(simulated):
    r = result_of(simulated, "autodl")
    assert_installed_as_planned(r, "2.4.1+cu121", "0.48.2")
    assert r["after"]["torchvision"] == "0.19.1"
    checks = preflight(r)
    for name in ("python", "install plan", "pinned versions", "jupyter kernel", "disk"):
        assert checks[name].startswith("[PASS]"), checks[name]
    assert "autodl-tmp/xtuner-course/workspace" in checks["disk"]


def test_python_3_13_stops_before_installing_anything(simulated):
    r = result_of(simulated, "python313")
    step = r["steps"][0]
    assert step["exit"] != 0 and "outside 3.10-3.12" in step["output"] and "Nothing was installed" in step["output"]
    assert not r["venv"] and len(r["steps"]) == 1


def test_readme_quick_starts_run_the_simulated_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for platform in ("AutoDL", "InternStudio"):
        block = re.search(rf"#### {platform}.*?```bash\n(.*?)```", readme, flags=re.S).group(1)
        lines = [line.split("#")[0].strip() for line in block.splitlines()]
        at = lines.index(sim.QUICKSTART[0])
        assert lines[at:at + len(sim.QUICKSTART)] == sim.QUICKSTART, platform


def test_autodl_working_folder_and_caches_go_to_the_data_disk(fake_root, monkeypatch, tmp_path):
    from helpers import workspace

    disk = fake_root / "root" / "autodl-tmp"
    disk.mkdir(parents=True)
    for name in ("COURSE_WORKDIR", "MODELSCOPE_CACHE", "HF_HOME", "PIP_CACHE_DIR"):
        monkeypatch.setenv(name, "")  # recorded, so whatever get_workspace sets is undone after the test
    monkeypatch.setenv("HF_HOME", str(tmp_path / "mine"))  # the learner's own choice stays
    assert platforms.default_workdir(tmp_path / "repo") == disk / platforms.WORKDIR_NAME
    assert platforms.default_workdir(disk / "xtuner-course") == disk / "xtuner-course" / "workspace"
    ws = workspace.get_workspace()
    assert platforms.on_data_disk(ws.root)
    assert os.environ["MODELSCOPE_CACHE"] == str(disk / "cache" / "modelscope")
    assert os.environ["HF_HOME"] == str(tmp_path / "mine")
