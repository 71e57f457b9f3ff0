"""What a family may do to run its denoiser faster than exact bf16: fp8 weights and activations (`quantize`) and a
step cache that reuses the last step's work when the denoiser's first block says the step changes little
(`step_cache`, used by requests that ask `acceleration: step_cache`). Both are off unless asked."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Quantize = Literal["none", "fp8"]
Acceleration = Literal["none", "step_cache"]  # a request's (and a style's) choice


class StepCacheArgs(BaseModel):
    """A family's step cache: diffusers' first-block cache (ParaAttention's, TeaCache-like). At each step the first
    transformer block runs; when its output's residual differs from the last fully computed step's by less than
    `threshold` (relative mean absolute difference), the other blocks are skipped and their cached residual added.
    Higher: more steps skipped, more drift; the defaults are the thresholds peers measured near-lossless on trained
    weights (BENCHMARKS.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["first_block"] = "first_block"
    threshold: float = Field(default=0.08, gt=0.0, le=10.0,
                             description="relative residual change under which a step reuses the cache")
