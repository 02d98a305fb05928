import pytest

from helpers import profiles


def test_profile_from_env(monkeypatch):
    monkeypatch.setenv(profiles.ENV_VAR, "tiny")
    assert profiles.get_profile().name == "tiny"


def test_auto_profile_is_cpu_without_cuda(monkeypatch):
    import torch

    monkeypatch.delenv(profiles.ENV_VAR, raising=False)
    assert profiles._default_profile_name() == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_profile_and_setting():
    with pytest.raises(ValueError, match="choose one of"):
        profiles.get_profile("huge")
    with pytest.raises(ValueError, match="Unknown profile setting"):
        profiles.get_profile("cpu", max_iter=3)


def test_overrides_ignore_none():
    prof = profiles.get_profile("cpu", max_iters=12, lr=None)
    assert prof.max_iters == 12 and prof.lr == profiles.PROFILES["cpu"].lr


def test_profiles_are_consistent():
    for prof in profiles.PROFILES.values():
        assert prof.method in {"qlora", "lora"} and prof.device in {"cpu", "cuda"}
        assert (prof.max_iters is None) != (prof.max_epochs is None)
        assert prof.warmup_iters >= 2 or prof.max_iters is None  # 0 or 1 warmup iterations break mmengine's LinearLR
