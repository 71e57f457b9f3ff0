"""The family registry: one `FamilySpec` per model family, the single place a family is wired.

App args (`config/app.py`), the bound deployments (`deployments/builder.py`), GPU placement (`cluster/placement.py`),
request schemas and tests derive from `SPECS`; adding a family means its model file, its deployment class and its spec.
Classes are named by import path and resolved on use, so this module imports neither torch nor Ray.
"""
from __future__ import annotations

import functools
import pkgutil
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from config.families import EmbedderArgs, FamilyArgs, FluxArgs, LLMArgs, SDXLArgs, SVDArgs, WanArgs

GIB = 2**30
Operation = Literal["optimize", "storyboard", "generate", "edit", "upscale", "animate", "embed"]


class Footprint(BaseModel):
    """GPU memory of one full-size bf16 replica of a family, in GiB: what the Montage model class held on one H200
    (BENCHMARKS.md, 2026-11-27; `random` source, bf16, production defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resident_gib: float = Field(description="reserved after construction")
    per_request_gib: float = Field(description="peak reserved minus resident, one request at the production defaults")
    text_encoder_gib: float | None = Field(
        default=None, description="what `text_encoder_offload` takes off the GPU at peak (None: no such option)")
    option_gib: dict[str, float] = Field(
        default_factory=dict, description="what an args option adds when it is set (args field → GiB)")


@dataclass(frozen=True)
class FamilySpec:
    """One model family: its names, its classes, what it serves and what it takes of a GPU."""

    key: str  # config key (`llm: {args, deployment}`), API model name, `Family.name` and result metadata
    deployment_name: str  # the Serve deployment: serve configs, `serve status`, handles
    args: type[FamilyArgs]
    model: str  # "module:Class" of its `models.family.Family`
    deployment: str  # "module:Class" of its `deployments.base.ModelDeployment`
    operations: tuple[Operation, ...]
    footprint: Footprint

    @property
    def model_class(self) -> type:
        return _resolve(self.model)

    @property
    def deployment_class(self) -> type:
        return _resolve(self.deployment)


@functools.cache
def _resolve(path: str) -> type:
    return pkgutil.resolve_name(path)


# Footprints measured on one H200 except where noted.
SPECS: dict[str, FamilySpec] = {spec.key: spec for spec in (
    FamilySpec("llm", "LLM", LLMArgs, "models.llm:LLM", "deployments.llm:LLMDeployment",
               ("optimize", "storyboard"),
               # 128 tokens cost 0.01; the allowance is a 2k-token storyboard's KV cache (28 KiB/token).
               Footprint(resident_gib=3.51, per_request_gib=0.06)),
    FamilySpec("sdxl", "SDXL", SDXLArgs, "models.sdxl:SDXL", "deployments.families:SDXLDeployment", ("generate", "upscale"),
               Footprint(resident_gib=9.29, per_request_gib=4.58)),  # UNet + Union ControlNet, 1024², canny
    FamilySpec("flux", "Flux", FluxArgs, "models.flux:Flux", "deployments.families:FluxDeployment",
               ("generate", "edit"),
               Footprint(resident_gib=31.72, per_request_gib=4.22,  # 1024², 512 T5 tokens
                         text_encoder_gib=4.76e9 * 2 / GIB,  # T5-XXL's weights (not measured apart)
                         option_gib={"kontext_id": 11.9e9 * 2 / GIB})),  # a separate Kontext transformer, bf16
    FamilySpec("svd", "SVD", SVDArgs, "models.svd:SVD", "deployments.families:SVDDeployment", ("animate",),
               Footprint(resident_gib=4.44, per_request_gib=23.65)),  # 25 × 1024×576, decode chunk 8
    FamilySpec("wan", "Wan", WanArgs, "models.wan:Wan", "deployments.families:WanDeployment", ("animate",),
               # UMT5 on the GPU: 43.44 resident, 51.09 peak; offloaded: 37.57 peak.
               Footprint(resident_gib=43.44, per_request_gib=7.65, text_encoder_gib=13.52)),
    FamilySpec("embedder", "Embedder", EmbedderArgs, "models.embedder:Embedder",
               "deployments.families:EmbedderDeployment", ("embed",),
               Footprint(resident_gib=0.1, per_request_gib=0.01)),  # MiniLM: estimated, 22 M parameters
)}


def families_with(operation: Operation) -> tuple[str, ...]:
    """Keys of the families that serve `operation`, in registry order (e.g. "generate" → ("sdxl", "flux"))."""
    return tuple(key for key, spec in SPECS.items() if operation in spec.operations)


def spec_for(args: FamilyArgs) -> FamilySpec:
    """The family whose args class `args` is."""
    for spec in SPECS.values():
        if type(args) is spec.args:
            return spec
    raise KeyError(f"no family takes {type(args).__name__}")


def step_cached(family: str) -> bool:
    """Whether `family` has a step cache (`acceleration: step_cache`): its args configure one."""
    return "step_cache" in SPECS[family].args.model_fields


def no_step_cache(family: str) -> str:
    """Why `acceleration: step_cache` is refused for `family` (at the ingress and on its replica)."""
    cached = " and ".join(name for name in SPECS if step_cached(name))
    return (f"{family} has no step cache (diffusers' cache hooks skip transformer blocks); {cached} have one, unless "
            "their args set step_cache to null; use none")
