"""GPU placement planner: resident memory per replica → `num_gpus` fractions → replicas packed on GPUs.

A replica's resident memory is its deployment's `memory_gb` when the config declares one, else an
estimate from `FOOTPRINTS`: bf16 weights from published parameter counts (2 bytes per parameter)
plus an activation allowance (the peak working set at the family's production defaults and the
default batch of 4) plus one CUDA context, since every Ray replica is its own process. `tiny`
sources run on CPU and need ~0 GB; `random` builds the full-size architecture, like `pretrained`.

Why all five families do not fit one H200 as is, and what gives (see `config/serve/README.md`):
bf16 FLUX with a separate Kontext transformer + Wan 14B with UMT5-XXL + SDXL/ControlNet-Union + SVD +
Qwen come to ~159 GB, more than the whole GPU. Kontext sharing the FLUX transformer (no `kontext_id`)
gives back 23.8 GB, keeping Wan's UMT5-XXL encoder off the GPU (`text_encoder_offload`) 11.4 GB.
"""
from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping

from pydantic import BaseModel, ConfigDict, Field

from config.app import AppArgs, FamilyDeployment
from config.families import FamilyArgs, FluxArgs, Source

CUDA_CONTEXT_GB = 0.5  # CUDA context + cuBLAS/cuDNN workspaces of one replica process
KONTEXT_TRANSFORMER_B = 11.9  # a separate FLUX.1 Kontext transformer (`kontext_id` set)
_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}  # auto: bf16 on CUDA


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GPU(_Frozen):
    """One kind of GPU and how many of them the plan may use."""

    name: str
    memory_gb: float = Field(gt=0, description="usable memory of one GPU")
    count: int = Field(default=1, ge=1)


GPUS = {
    "h200": GPU(name="H200", memory_gb=141),
    "h100": GPU(name="H100", memory_gb=80),
    "a100": GPU(name="A100-80GB", memory_gb=80),
    "l40s": GPU(name="L40S", memory_gb=48),
}
H200 = GPUS["h200"]


def gpu_spec(spec: str) -> GPU:
    """`h200` or `h200x8` (eight of them) → a GPU."""
    match = re.fullmatch(r"([a-z0-9-]+?)(?:x(\d+))?", spec.lower())
    if not match or match.group(1) not in GPUS:
        raise ValueError(f"unknown GPU {spec!r}; known: {', '.join(GPUS)} (optionally xN, e.g. h200x8)")
    return GPUS[match.group(1)].model_copy(update={"count": int(match.group(2) or 1)})


class Footprint(_Frozen):
    """Estimated bf16 resident memory of one full-size replica of a family."""

    params_b: dict[str, float] = Field(description="resident components, billions of parameters")
    activation_gb: float = Field(description="peak working set at the production defaults (KV cache for the LLM)")
    text_encoder: str | None = Field(default=None, description="the component `text_encoder_offload` keeps on CPU")


FOOTPRINTS: dict[str, Footprint] = {
    # 8 UNet rows (batch 4 × CFG) at 128² latents + ControlNet residuals; VAE decode one image at a time.
    "sdxl": Footprint(params_b={"unet": 2.57, "controlnet_union": 1.26, "clip_l": 0.12, "clip_bigg": 0.69,
                                "vae": 0.08}, activation_gb=8.0),
    # 4 rows × (4096 image + 512 text tokens), guidance-distilled (no CFG); VAE decode of 4 images at 1024².
    "flux": Footprint(params_b={"transformer": 11.9, "t5_xxl": 4.76, "clip_l": 0.12, "vae": 0.08},
                      activation_gb=8.0, text_encoder="t5_xxl"),
    # 25 frames × CFG at 72×128 latents; temporal VAE decode in chunks of 8 frames at 576×1024.
    "svd": Footprint(params_b={"unet": 1.52, "vit_h": 0.63, "vae": 0.10}, activation_gb=10.0),
    # 32,760 tokens (81 frames at 480×832), cond/uncond passes run one after the other; causal VAE decode.
    "wan": Footprint(params_b={"transformer": 16.4, "umt5_xxl": 5.68, "vit_h": 0.63, "vae": 0.13},
                     activation_gb=8.0, text_encoder="umt5_xxl"),
    # KV cache 28 KiB/token (28 layers × 2 KV heads × 128 × K,V × bf16): 16 sequences × 2k tokens + logits.
    "llm": Footprint(params_b={"qwen2.5_1.5b": 1.54}, activation_gb=1.5),
    "embedder": Footprint(params_b={"minilm": 0.02}, activation_gb=0.25),
}


class PlanError(ValueError):
    """The families cannot be placed on the GPUs with the requested headroom."""


def estimate_gb(name: str, args: FamilyArgs, *, text_encoder_offload: bool = False) -> float:
    """Resident GPU memory of one replica of family `name` (GB) from `FOOTPRINTS`."""
    if args.source is Source.TINY:
        return 0.0
    footprint = FOOTPRINTS[name]
    params = dict(footprint.params_b)
    if text_encoder_offload:
        if footprint.text_encoder is None:
            raise ValueError(f"{name}: no text encoder to offload")
        del params[footprint.text_encoder]
    if isinstance(args, FluxArgs) and args.kontext_id:
        params["kontext_transformer"] = KONTEXT_TRANSFORMER_B
    size = _BYTES[args.dtype]
    return round(sum(params.values()) * size + footprint.activation_gb * size / 2 + CUDA_CONTEXT_GB, 2)


def gpu_fraction(memory_gb: float, gpu: GPU) -> float:
    """`memory_gb / gpu.memory_gb` rounded up to a 0.01 grid."""
    return math.ceil(round(memory_gb / gpu.memory_gb * 100, 6)) / 100


class FamilyPlan(_Frozen):
    name: str
    source: Source
    replicas: int
    memory_gb: float = Field(description="resident memory per replica")
    declared: bool = Field(description="memory_gb from the config (else from FOOTPRINTS)")
    num_gpus: float = Field(description="GPU share per replica")
    gpus: list[int] = Field(description="GPU index of each replica; empty when it needs no GPU")

    @property
    def total_gb(self) -> float:
        return self.memory_gb * self.replicas


class GPULoad(_Frozen):
    index: int
    memory_gb: float
    share: float = Field(description="sum of the num_gpus of its replicas")


class Plan(_Frozen):
    """Replicas, their memory and GPU shares, and where they land."""

    gpu: GPU
    headroom: float
    families: list[FamilyPlan]
    loads: list[GPULoad]

    @property
    def capacity_gb(self) -> float:
        return self.gpu.memory_gb * self.gpu.count

    @property
    def total_gb(self) -> float:
        return round(sum(f.total_gb for f in self.families), 2)

    @property
    def headroom_gb(self) -> float:
        return round(self.capacity_gb - self.total_gb, 2)

    @property
    def headroom_fraction(self) -> float:
        return self.headroom_gb / self.capacity_gb


def plan(families: AppArgs | Mapping[str, FamilyDeployment], gpu: GPU = H200, *, headroom: float = 0.10,
         text_encoder_offload: Collection[str] = ()) -> Plan:
    """Plan every enabled family's replicas (autoscaling `max_replicas`) on `gpu.count` GPUs.

    Raises `PlanError` when a replica is larger than one GPU, when the total exceeds
    `memory × count × (1 − headroom)`, or when first-fit-decreasing packing cannot place a replica.
    """
    if not 0 <= headroom < 1:
        raise ValueError("headroom must be in [0, 1)")
    if isinstance(families, AppArgs):
        families = families.families()
    rows = []
    for name, family in families.items():
        declared = family.deployment.memory_gb
        memory = declared if declared is not None else estimate_gb(
            name, family.args,
            text_encoder_offload=name in text_encoder_offload or getattr(family.args, "text_encoder_offload", False))
        rows.append((name, family, memory, declared is not None))

    too_big = [f"{name} {memory:.1f} GB" for name, _, memory, _ in rows if memory > gpu.memory_gb]
    if too_big:
        raise PlanError(f"a replica is larger than one {gpu.name} ({gpu.memory_gb:g} GB): {', '.join(too_big)}")
    budget = gpu.memory_gb * gpu.count * (1 - headroom)
    total = sum(memory * family.deployment.autoscaling.max_replicas for _, family, memory, _ in rows)
    if total > budget:
        parts = sorted(((memory * f.deployment.autoscaling.max_replicas, name, f.deployment.autoscaling.max_replicas,
                         memory) for name, f, memory, _ in rows if memory), reverse=True)
        detail = ", ".join(f"{name} {n} × {m:.1f} = {t:.1f} GB" for t, name, n, m in parts)
        raise PlanError(f"over-committed: {total:.1f} GB planned > {budget:.1f} GB usable "
                        f"({gpu.count} × {gpu.name} {gpu.memory_gb:g} GB with {headroom:.0%} headroom): {detail}")

    placed = _pack([(name, memory, gpu_fraction(memory, gpu)) for name, family, memory, _ in rows
                    for _ in range(family.deployment.autoscaling.max_replicas)], gpu, gpu.memory_gb * (1 - headroom))
    family_plans = [
        FamilyPlan(name=name, source=family.args.source, replicas=family.deployment.autoscaling.max_replicas,
                   memory_gb=memory, declared=declared, num_gpus=gpu_fraction(memory, gpu), gpus=placed.get(name, []))
        for name, family, memory, declared in rows
    ]
    loads = [GPULoad(index=i, memory_gb=round(sum(f.memory_gb * f.gpus.count(i) for f in family_plans), 2),
                     share=round(sum(f.num_gpus * f.gpus.count(i) for f in family_plans), 2)) for i in range(gpu.count)]
    return Plan(gpu=gpu, headroom=headroom, families=family_plans, loads=loads)


def _pack(replicas: list[tuple[str, float, float]], gpu: GPU, per_gpu_gb: float) -> dict[str, list[int]]:
    """First-fit decreasing: each replica (largest first) on the first GPU with room in memory and share."""
    used = [0.0] * gpu.count
    shares = [0.0] * gpu.count
    placed: dict[str, list[int]] = {}
    for name, memory, share in sorted(replicas, key=lambda r: r[1], reverse=True):
        if not memory:
            continue
        index = next((i for i in range(gpu.count)
                      if used[i] + memory <= per_gpu_gb + 1e-9 and shares[i] + share <= 1 + 1e-9), None)
        if index is None:
            loads = ", ".join(f"GPU{i} {u:.1f} GB" for i, u in enumerate(used))
            raise PlanError(f"cannot place a {name} replica ({memory:.1f} GB) on any {gpu.name} within "
                            f"{per_gpu_gb:.1f} GB per GPU; loads so far: {loads}")
        used[index] += memory
        shares[index] += share
        placed.setdefault(name, []).append(index)
    return placed


def apply(plan: Plan, args: AppArgs) -> AppArgs:
    """`args` with each planned family's `num_gpus` set to its planned fraction."""
    updates = {}
    for family_plan in plan.families:
        family = getattr(args, family_plan.name)
        deployment = family.deployment.model_copy(update={"num_gpus": family_plan.num_gpus})
        updates[family_plan.name] = family.model_copy(update={"deployment": deployment})
    return args.model_copy(update=updates)
