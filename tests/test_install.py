"""The install plan: what helpers/install.py keeps and installs for each kind of environment, decided from facts."""

import json
import subprocess
import sys

import pytest

from helpers import install
from helpers.install import Facts


def plan_for(**facts):
    return install.make_plan(Facts(**{"python": (3, 11, 7), **facts}))


def test_laptop_without_torch_gets_the_pinned_pair_and_cpu_4bit():
    plan = plan_for()
    assert (plan.keep_torch, plan.torch, plan.torchvision) == (False, "2.14.1", "0.29.1")
    assert plan.bitsandbytes == "0.48.2" and plan.constraints == ["torch==2.14.1", "torchvision==0.29.1"]
    assert "runs on the CPU" in plan.reasons[0]


def test_internstudio_torch_2_1_is_kept_with_xtuners_bitsandbytes_and_numpy_1():
    plan = plan_for(python=(3, 10, 13), torch="2.1.2", torch_cuda="12.1", torchvision="0.16.2", driver_cuda="12.2")
    assert plan.keep_torch and plan.torch == "2.1.2" and not plan.install_torchvision
    assert plan.bitsandbytes == "0.45.0"  # 0.48.2 requires torch>=2.3: pip would replace the platform's torch
    assert plan.constraints == ["torch==2.1.2", "torchvision==0.16.2", "numpy<2"]
    assert not plan.error


@pytest.mark.parametrize("torch_version, vision", [("2.4.1+cu121", "0.19.1"), ("2.1.2", "0.16.2"),
                                                   ("2.0.1", "0.15.2"), ("2.14.1", "0.29.1"), ("2.5.1+cu124", "0.20.1")])
def test_missing_torchvision_gets_the_release_built_with_that_torch(torch_version, vision):
    plan = plan_for(torch=torch_version, torch_cuda="12.1")
    assert plan.install_torchvision and plan.torchvision == vision
    assert f"torch=={torch_version}" in plan.constraints and f"torchvision=={vision}" in plan.constraints


def test_missing_torchvision_is_installed_without_deps_so_torch_stays(tmp_path):
    plan = plan_for(torch="2.4.1+cu121", torch_cuda="12.1")
    steps = dict(install.pip_steps(plan, tmp_path / "c.txt"))
    assert "torch" not in steps and steps["torchvision"][-2:] == ["--no-deps", "torchvision==0.19.1"]
    assert all(cmd[cmd.index("-c") + 1] == str(tmp_path / "c.txt") for cmd in steps.values())
    assert any("cu121 build" in r and "troubleshooting.md#19" in r for r in plan.reasons)


def test_bitsandbytes_step_only_when_it_differs_from_xtuners_pin(tmp_path, monkeypatch):
    monkeypatch.setattr(install, "installed_version", lambda name: None)  # a new environment
    monkeypatch.setenv(install.WHEELHOUSE_VAR, str(tmp_path / "house"))  # with an empty wheelhouse
    old = dict(install.pip_steps(plan_for(torch="2.1.2", torchvision="0.16.2"), tmp_path / "c"))
    new = dict(install.pip_steps(plan_for(torch="2.4.1", torchvision="0.19.1"), tmp_path / "c"))
    assert "bitsandbytes" not in old and new["bitsandbytes"][-1] == "bitsandbytes==0.48.2"
    assert list(new) == ["xtuner", "bitsandbytes", "embedded model", "llama.cpp source",
                         "llama.cpp wheel (portable build, about 8 minutes on 2 cores)", "llama.cpp", "course tools"]
    assert all(cmd[cmd.index("-c") + 1] == str(tmp_path / "c") for cmd in new.values())


def test_llama_cpp_is_built_portably_once_per_wheelhouse(tmp_path, monkeypatch):
    monkeypatch.setattr(install, "installed_version", lambda name: None)
    house, pip = tmp_path / "house", [sys.executable, "-m", "pip", "install", "-c", "c.txt"]
    steps = dict(install.llama_cpp_steps(pip, house))
    build = steps["llama.cpp wheel (portable build, about 8 minutes on 2 cores)"]
    assert "--config-settings=cmake.args=-DGGML_NATIVE=OFF" in build and build[build.index("-w") + 1] == str(house)
    assert steps["llama.cpp"][-3:] == ["--find-links", str(house), f"llama-cpp-python[server]=={install.LLAMA_CPP}"]
    house.mkdir()
    (house / f"llama_cpp_python-{install.LLAMA_CPP}.tar.gz").write_bytes(b"")
    (house / f"llama_cpp_python-{install.LLAMA_CPP}-py3-none-linux_x86_64.whl").write_bytes(b"")
    assert [name for name, _ in install.llama_cpp_steps(pip, house)] == ["llama.cpp"]  # an instructor's wheelhouse
    monkeypatch.setattr(install, "installed_version", lambda name: install.LLAMA_CPP)
    monkeypatch.setattr(install.sys, "prefix", str(tmp_path / "env"))
    (tmp_path / "env" / install.CONVERTER_DIR).mkdir(parents=True)
    assert install.llama_cpp_steps(pip, house) == []  # installed, converter in place: nothing to do


def test_the_converter_is_copied_from_the_source_release(tmp_path):
    import io
    import tarfile

    house, root = tmp_path / "house", f"llama_cpp_python-{install.LLAMA_CPP}/vendor/llama.cpp/"
    house.mkdir()
    with tarfile.open(house / f"llama_cpp_python-{install.LLAMA_CPP}.tar.gz", "w:gz") as tar:
        for name in ["convert_hf_to_gguf.py", "conversion/base.py", "gguf-py/gguf/__init__.py", "LICENSE",
                     "src/llama.cpp", "convert_lora_to_gguf.py"]:
            data = f"# {name}\n".encode()
            info = tarfile.TarInfo(root + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    target = install.copy_converter(house, tmp_path / "env")
    found = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert found == ["LICENSE", "conversion/base.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]
    assert install.copy_converter(house, tmp_path / "env") == target  # already there: kept


def test_reinstall_over_the_stack_skips_the_xtuner_step_that_would_undo_bitsandbytes(tmp_path):
    steps = dict(install.pip_steps(plan_for(torch="2.14.1", torchvision="0.29.1"), tmp_path / "c"))
    assert "xtuner" not in steps and "bitsandbytes" in steps  # this environment has the stack already


@pytest.mark.parametrize("driver, pair", [(None, ("2.14.1", "0.29.1")), ("13.0", ("2.14.1", "0.29.1")),
                                          ("12.2", ("2.5.1", "0.20.1")), ("12.8", ("2.5.1", "0.20.1"))])
def test_no_torch_on_a_gpu_machine_gets_a_build_its_driver_runs(driver, pair):
    plan = plan_for(driver_cuda=driver)
    assert (plan.torch, plan.torchvision) == pair and plan.bitsandbytes == "0.48.2"


def test_old_driver_without_torch_is_refused():
    assert "platform's PyTorch image" in plan_for(driver_cuda="11.8").error


def test_torch_built_for_a_newer_cuda_than_the_driver_is_kept_with_a_warning():
    plan = plan_for(torch="2.5.1", torch_cuda="12.4", torchvision="0.20.1", driver_cuda="12.2")
    assert plan.keep_torch and any("WARNING" in r and "driver supports CUDA 12.2" in r for r in plan.reasons)


@pytest.mark.parametrize("python", [(3, 9, 18), (3, 13, 0)])
def test_python_outside_3_10_to_3_12_fails_before_anything(python):
    plan = plan_for(python=python)
    assert "outside 3.10–3.12" in plan.error and "Nothing was installed" in plan.error and not plan.constraints


def test_broken_torch_is_not_replaced():
    plan = plan_for(torch="2.1.2", torch_error="ImportError: libcudnn.so.8: cannot open shared object file")
    assert "never replaces" in plan.error and "libcudnn" in plan.error


def test_render_plan_prints_reasons_and_constraints():
    facts = Facts(python=(3, 10, 13), torch="2.1.2", torchvision="0.16.2")
    text = install.render_plan(install.make_plan(facts), facts)
    assert text.splitlines()[0].startswith("== install plan (Python 3.10.13")
    assert "keeping torch 2.1.2" in text and "pip constraints for every step: torch==2.1.2" in text


def test_read_facts_sees_this_environments_torch():
    facts = install.read_facts()
    assert facts.python == tuple(sys.version_info[:3]) and facts.torch == install.installed_version("torch")
    assert facts.torch_error is None and facts.numpy


def test_dry_run_prints_the_plan_for_this_environment_and_changes_nothing():
    plan_file = install.Path(sys.prefix) / install.PLAN_FILE
    before = plan_file.read_bytes()
    out = subprocess.run([sys.executable, "-m", "helpers.install", "--dry-run"], capture_output=True, text=True,
                         check=True).stdout
    assert f"keeping torch {install.installed_version('torch')}" in out and "bitsandbytes 0.48.2" in out
    assert plan_file.read_bytes() == before


def _installed_here(line: str) -> bool:
    """Whether the package a `pip check` line is about lives in this venv (not the base Python's site-packages)."""
    import importlib.metadata

    location = importlib.metadata.distribution(line.split()[0]).locate_file("")
    return install.Path(sys.prefix).resolve() in install.Path(location).resolve().parents


def test_this_environment_matches_its_plan_and_pip_check_shows_only_known_conflicts():
    plan = json.loads((install.Path(sys.prefix) / install.PLAN_FILE).read_text())["plan"]
    assert install.installed_version("bitsandbytes") == plan["bitsandbytes"]
    lines = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True).stdout.splitlines()
    ours = [line for line in lines if line.strip() and _installed_here(line)]
    assert ours and [line for line in ours if not line.startswith(install.KNOWN_PIP_CHECK)] == []


def test_kernel_is_registered_in_the_environment_for_its_python():
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(install.KERNEL_NAME)
    assert spec.display_name == install.KERNEL_DISPLAY_NAME
    assert install.Path(spec.argv[0]).absolute() == install.Path(sys.executable).absolute()
