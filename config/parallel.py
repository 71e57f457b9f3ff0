"""A family's parallel layout: one request's denoiser over U × R × C ranks (a gang replica's whole GPUs)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ParallelLayout(BaseModel):
    """Ulysses (heads) × ring (sequence) context parallelism through diffusers' `ContextParallelConfig`, times CFG
    parallelism (the conditional and unconditional branches on different ranks). Degree 1 runs the family in the
    replica itself, as without a layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ulysses: int = Field(default=1, ge=1, le=64, description="ranks that split the attention heads (all-to-all)")
    ring: int = Field(default=1, ge=1, le=64, description="ranks that split the sequence (ring attention; CUDA only)")
    cfg: int = Field(default=1, ge=1, le=2, description="2: the two guidance branches on two halves of the gang")
    placement: Literal["STRICT_PACK", "PACK"] = Field(
        default="STRICT_PACK", description="the gang's placement group strategy: one node (STRICT_PACK) or as few "
                                           "as fit (PACK)")

    @property
    def degree(self) -> int:
        """Ranks (whole GPUs) one replica owns."""
        return self.ulysses * self.ring * self.cfg

    @property
    def context(self) -> int:
        """Ranks one denoiser forward's sequence is split over."""
        return self.ulysses * self.ring

    def errors(self, family: str, heads: int | None, text_tokens: int | None, device: str,
               uses_cfg: bool) -> list[str]:
        """Why this layout cannot run `family` (heads: its attention heads where known; text_tokens: a text
        sequence the context ranks split), each message naming its field; [] when it can."""
        found = []
        if self.cfg > 1 and not uses_cfg:
            found.append(f"parallel.cfg: {family} calls its denoiser once a step (no unconditional branch); set 1")
        if heads is not None and heads % self.ulysses:
            found.append(f"parallel.ulysses: {self.ulysses} does not divide {family}'s {heads} attention heads")
        if text_tokens is not None and text_tokens % self.context:
            found.append(f"parallel: ulysses × ring = {self.context} does not divide the {text_tokens} text tokens "
                         f"(max_sequence_length)")
        if self.ring > 1 and device == "cpu":
            found.append("parallel.ring: diffusers' ring attention merges partial results by their log-sum-exp, which "
                         "only its CUDA backends return (the CPU's native SDPA has none); use ulysses on the CPU")
        return found
