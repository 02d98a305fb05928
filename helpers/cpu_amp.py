"""Mixed precision for ``xtuner train`` on a CPU: the forward pass in bfloat16 where the CPU computes it natively.

XTuner's GPU configs train under ``AmpOptimWrapper`` (float16 autocast); mmengine's wrapper refuses a CPU. The cpu
profile's config names ``CpuAutocastOptimWrapper`` instead (xconfig's CPU edits). The weights, the LoRA adapter, its
gradients and AdamW's state stay float32; inside the forward pass ``torch.autocast`` runs the matrix products in
bfloat16, and transformers computes the loss from float32 logits. On a CPU with AVX512-BF16 or AMX a bfloat16 matrix
product runs 2-3x faster than a float32 one; elsewhere bfloat16 is emulated and slower, so there the wrapper
trains in float32 and says so in the log.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


class CpuAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward pass runs under ``torch.autocast("cpu", torch.bfloat16)`` on a CPU with
    native bfloat16, and in float32 elsewhere. bfloat16 keeps float32's exponent range: no loss scaling is needed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bf16 = native_bf16()
        print_log("CpuAutocastOptimWrapper: forward pass in " + (
            "bfloat16 (this CPU has native bfloat16)" if self.bf16
            else "float32 (this CPU has no native bfloat16, which would be emulated and slower)"), "current")

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            yield
