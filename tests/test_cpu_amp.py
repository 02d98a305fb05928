"""The cpu profile's mixed precision: the forward pass in bfloat16 where the CPU has it, float32 weights always."""

from pathlib import Path

import pytest
import torch

from helpers import cpu_amp


def test_native_bf16_matches_the_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = set(cpuinfo.read_text().split())
    assert cpu_amp.native_bf16() == bool({"avx512_bf16", "amx_tile"} & flags)


@pytest.mark.parametrize("native", [True, False])
def test_forward_runs_in_bfloat16_only_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(cpu_amp, "native_bf16", lambda: native)
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    wrapper = cpu_amp.CpuAutocastOptimWrapper(optimizer=torch.optim.AdamW(model.parameters(), lr=0.1))
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 8))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    wrapper.update_params(out.float().pow(2).mean())  # backward and AdamW outside the autocast, as mmengine does
    assert model.weight.dtype == torch.float32 and model.weight.grad is None
    assert not torch.equal(model.weight.detach(), before)
    with torch.no_grad():
        assert model(torch.randn(2, 8)).dtype == torch.float32  # outside training the model is float32 again
