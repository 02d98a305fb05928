"""Pre-flight on this CPU machine passes for the cpu profile, and fails with the right fix in broken states."""

import sys
import types

import pytest

from helpers import env, files, preflight, profiles


@pytest.fixture
def cpu():
    return profiles.get_profile("cpu")


def by_name(checks):
    return {c.name: c for c in checks}


@pytest.fixture
def own_kernel(tmp_path, monkeypatch):
    """This environment's user-level kernel, as `make install` registers it (in a private Jupyter data dir:
    on a machine with several copies of the course, the real one belongs to whichever installed last)."""
    import subprocess

    from helpers import install

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", install.KERNEL_NAME],
                   check=True, capture_output=True)


def test_cpu_profile_passes_here(tmp_path, cpu, own_kernel):
    checks = by_name(preflight.run_checks(cpu, tmp_path))
    assert all(c.status == "pass" for c in checks.values()), preflight.render(list(checks.values()))
    assert preflight.main(["--profile", "cpu", "--workdir", str(tmp_path)]) == 0


def test_tiny_profile_really_quantises_on_cpu():
    check = preflight.check_bitsandbytes(profiles.get_profile("tiny"))
    assert check.status == "pass" and "nf4 works on cpu" in check.detail


def test_old_python_fails(monkeypatch):
    monkeypatch.setattr(preflight, "sys", types.SimpleNamespace(version_info=(3, 13, 1)))
    check = preflight.check_python()
    assert check.status == "fail" and "Python 3.11" in check.fix


def test_torch_built_for_newer_cuda_than_the_driver_fails(monkeypatch, cpu):
    import torch

    monkeypatch.setattr(preflight, "nvidia_driver_cuda", lambda: "12.2")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    check = preflight.check_torch(cpu)
    assert check.status == "fail" and "newer CUDA than the driver supports (12.2)" in check.detail
    assert "troubleshooting.md#21" in check.fix


def test_cpu_torch_beside_a_driver_fails_with_the_driver_version(monkeypatch, cpu):
    import torch

    monkeypatch.setattr(preflight, "nvidia_driver_cuda", lambda: "12.2")
    monkeypatch.setattr(torch.version, "cuda", None)
    check = preflight.check_torch(cpu)
    assert check.status == "fail" and "CUDA <= 12.2" in check.fix and "troubleshooting.md#6" in check.fix


def test_install_plan_kept_and_kernel_registered_here(own_kernel):
    plan, *rest = preflight.check_install()
    assert plan.status == "pass" and "kept as planned" in plan.detail and rest == []
    kernel = preflight.check_kernel()
    assert kernel.status == "pass" and sys.executable in kernel.detail


def test_kernel_of_another_copy_of_the_course_warns(monkeypatch, tmp_path):
    import json

    spec = tmp_path / "kernels" / "xtuner-course"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["/elsewhere/.venv/bin/python", "-m", "ipykernel_launcher"]}))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    check = preflight.check_kernel()
    assert check.status == "warn" and "/elsewhere/.venv/bin/python" in check.detail and "make install" in check.fix


def test_torch_replaced_after_install_fails(tmp_path):
    import json

    from helpers import install

    plan = {"plan": {"torch": "2.1.2", "bitsandbytes": "0.45.0", "torchvision": "0.16.2"}}
    (tmp_path / install.PLAN_FILE).write_text(json.dumps(plan))
    check, = preflight.check_install(tmp_path)
    assert check.status == "fail" and f"torch 2.1.2 -> {install.installed_version('torch')}" in check.detail
    assert "troubleshooting.md#21" in check.fix


def test_missing_kernel_fails_with_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    check = preflight.check_kernel()
    assert check.status == "fail" and "ipykernel install --user --name xtuner-course" in check.fix


def test_autodl_system_disk_warns(fake_root, tmp_path):
    (fake_root / "root" / "autodl-tmp").mkdir(parents=True)
    disk, _ = preflight.check_resources(profiles.get_profile("cpu"), tmp_path, 134.5e6)
    assert disk.status == "warn" and "system disk" in disk.detail and "autodl-tmp" in disk.fix
    on_disk, _ = preflight.check_resources(profiles.get_profile("cpu"), fake_root / "root" / "autodl-tmp", 134.5e6)
    assert on_disk.status == "pass"


def test_gpu_profile_without_gpu_fails(monkeypatch):
    monkeypatch.setattr(preflight, "nvidia_driver_cuda", lambda: None)
    check = preflight.check_torch(profiles.get_profile("gpu"))
    assert check.status == "fail" and "COURSE_PROFILE=cpu" in check.fix


def test_broken_bitsandbytes_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    check = preflight.check_bitsandbytes(profiles.get_profile("tiny"))
    assert check.status == "fail" and "python -m bitsandbytes" in check.fix


def test_driver_cuda_version_is_read_from_nvidia_smi(monkeypatch):
    smi = "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |"
    monkeypatch.setattr(preflight.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(preflight.subprocess, "run", lambda *a, **k: types.SimpleNamespace(stdout=smi))
    assert preflight.nvidia_driver_cuda() == "12.4"


def test_xtuner_missing_from_path(monkeypatch):
    from helpers import cli

    monkeypatch.setattr(cli, "xtuner_command", lambda *args: ["xtuner", *args])
    monkeypatch.setattr(preflight.shutil, "which", lambda name: None)
    check = preflight.check_xtuner_cli()
    assert check.status == "fail" and "make install" in check.fix


def test_wrong_transformers_version_fails(monkeypatch):
    rows = env.versions()
    for row in rows:
        if row["package"] == "transformers":
            row.update(installed="4.50.0", ok=False)
    monkeypatch.setattr(env, "versions", lambda: rows)
    check = preflight.check_pins()
    assert check.status == "fail" and "transformers 4.50.0 (want 4.48.0)" in check.detail


def test_deepspeed_profile_without_deepspeed_or_mpi4py(monkeypatch):
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: None)
    check = preflight.check_deepspeed(profiles.get_profile("gpu", deepspeed="deepspeed_zero2"))
    assert check.status == "fail" and "deepspeed, mpi4py" in check.detail and "mpi4py" in check.fix


def test_full_disk_fails_with_sizes(monkeypatch, tmp_path):
    monkeypatch.setattr(files, "free_disk_gb", lambda path: 1.0)
    disk, _ = preflight.check_resources(profiles.get_profile("gpu"), tmp_path, 1.89e9)
    assert disk.status == "fail" and "download 3.78" in disk.detail and "autodl-tmp" in disk.fix


def test_gpu_profile_needs_ram_for_the_merge_not_for_training_on_cpu():
    assert preflight.resource_needs(profiles.get_profile("gpu"), 1.89e9)["ram_gb"] == pytest.approx(4.5)
    assert preflight.resource_needs(profiles.get_profile("cpu"), 1.89e9)["ram_gb"] > 15


def test_7b_needs_more_than_the_laptop(tmp_path):
    need = preflight.resource_needs(profiles.get_profile("gpu"), 7.7e9)
    assert need["download_gb"] == pytest.approx(15.4) and need["merge_disk_gb"] > 15


def test_conflicting_mkl_layer_warns(monkeypatch):
    monkeypatch.setenv("MKL_THREADING_LAYER", "INTEL")
    check = preflight.check_mkl()
    assert check.status == "warn" and "MKL_THREADING_LAYER=GNU" in check.fix


def test_gpu_model_unreachable_fails_and_shared_folder_passes(monkeypatch, fake_root):
    gpu = profiles.get_profile("gpu")
    monkeypatch.setattr(preflight, "modelscope_reachable", lambda timeout=3.0: False)
    assert preflight.check_platform(gpu).status == "fail"
    (fake_root / "root/share/new_models" / gpu.model).mkdir(parents=True)
    assert preflight.check_platform(gpu).status == "pass"


def test_main_exits_non_zero_on_failure(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(preflight, "check_python", lambda: preflight.Check("python", "fail", "3.13", "use 3.11"))
    assert preflight.main(["--profile", "cpu", "--workdir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] python" in out and "fix: use 3.11" in out and "1 failed: python" in out
