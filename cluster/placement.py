"""GPU placement planner: GPU memory per replica (GiB) → `num_gpus` fractions → replicas packed on GPUs.

A replica's memory is its deployment's `memory_gib` when the config declares one, else an estimate from its
family's measured `Footprint` (`config/specs.py`): the resident memory after construction, plus the peak working set
of one request times the deployment's `max_batch_size`, plus one CUDA context (every Ray replica is its own process).
`tiny` sources run on the CPU and need nothing.

All five families fit one H200 only with images at batch 1, Kontext sharing the FLUX transformer and Wan's
UMT5-XXL on the CPU (see `config/serve/README.md`); one H100 holds the image families and the LLM.
"""
from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping

from pydantic import BaseModel, ConfigDict, Field

from config.app import AppArgs, FamilyDeployment
from config.families import FamilyArgs, Source
from config.specs import SPECS

CUDA_CONTEXT_GIB = 0.8  # measured 0.68–0.77 GiB per process (torch 2.11, CUDA 13, cuBLAS/cuDNN), rounded up
_DTYPE_SCALE = {"auto": 1, "bfloat16": 1, "float16": 1, "float32": 2}  # relative to the bf16 measurements


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GPU(_Frozen):
    """One kind of GPU and how many of them the plan may use."""

    name: str
    memory_gib: float = Field(gt=0, description="memory of one GPU as torch reports it (total_memory)")
    count: int = Field(default=1, ge=1)


GPUS = {
    "h200": GPU(name="H200", memory_gib=139.8),  # measured
    "h100": GPU(name="H100", memory_gib=79.3),  # 81559 MiB on nvidia-smi, scaled as the H200's reading
    "a100": GPU(name="A100-80GB", memory_gib=79.1),
    "l40s": GPU(name="L40S", memory_gib=44.4),
}
H200 = GPUS["h200"]
H100 = GPUS["h100"]


def gpu_spec(spec: str) -> GPU:
    """`h200` or `h200x8` (eight of them) → a GPU."""
    match = re.fullmatch(r"([a-z0-9-]+?)(?:x(\d+))?", spec.lower())
    if not match or match.group(1) not in GPUS:
        raise ValueError(f"unknown GPU {spec!r}; known: {', '.join(GPUS)} (optionally xN, e.g. h200x8)")
    return GPUS[match.group(1)].model_copy(update={"count": int(match.group(2) or 1)})


class PlanError(ValueError):
    """The families cannot be placed on the GPUs with the requested headroom."""


def estimate_gib(name: str, family: FamilyDeployment, *, text_encoder_offload: bool = False) -> float:
    """GPU memory of one replica of family `name` (GiB) from its measured footprint and its batch size."""
    args: FamilyArgs = family.args
    if args.source is Source.TINY:
        return 0.0
    footprint = SPECS[name].footprint
    batching = family.deployment.batching
    memory = footprint.resident_gib + footprint.per_request_gib * (batching.max_batch_size if batching else 1)
    if text_encoder_offload:
        if footprint.text_encoder_gib is None:
            raise ValueError(f"{name}: no text encoder to offload")
        memory -= footprint.text_encoder_gib
    memory += sum(gib for option, gib in footprint.option_gib.items() if getattr(args, option))
    return round(memory * _DTYPE_SCALE[args.dtype] + CUDA_CONTEXT_GIB, 2)


def gpu_fraction(memory_gib: float, gpu: GPU) -> float:
    """`memory_gib / gpu.memory_gib` rounded up to a 0.01 grid."""
    return math.ceil(round(memory_gib / gpu.memory_gib * 100, 6)) / 100


class FamilyPlan(_Frozen):
    name: str
    source: Source
    replicas: int
    memory_gib: float = Field(description="resident memory per replica (per rank of a gang)")
    declared: bool = Field(description="memory_gib from the config (else from the family's footprint)")
    num_gpus: float = Field(description="GPU share per replica (per rank of a gang: 1)")
    gpus: list[int] = Field(description="GPU index of each replica's ranks; empty when it needs no GPU")
    ranks: int = Field(default=1, description="ranks per replica (args.parallel's degree), a whole GPU each")

    @property
    def total_gib(self) -> float:
        return self.memory_gib * self.replicas * self.ranks


class GPULoad(_Frozen):
    index: int
    memory_gib: float
    share: float = Field(description="sum of the num_gpus of its replicas")


class Plan(_Frozen):
    """Replicas, their memory and GPU shares, and where they land."""

    gpu: GPU
    headroom: float
    families: list[FamilyPlan]
    loads: list[GPULoad]

    @property
    def capacity_gib(self) -> float:
        return self.gpu.memory_gib * self.gpu.count

    @property
    def total_gib(self) -> float:
        return round(sum(f.total_gib for f in self.families), 2)

    @property
    def headroom_gib(self) -> float:
        return round(self.capacity_gib - self.total_gib, 2)

    @property
    def headroom_fraction(self) -> float:
        return self.headroom_gib / self.capacity_gib


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
        declared = family.deployment.memory_gib
        memory = declared if declared is not None else estimate_gib(
            name, family,
            text_encoder_offload=name in text_encoder_offload or getattr(family.args, "text_encoder_offload", False))
        rows.append((name, family, memory, declared is not None))

    too_big = [f"{name} {memory:.1f} GiB" for name, _, memory, _ in rows if memory > gpu.memory_gib]
    if too_big:
        raise PlanError(f"a replica is larger than one {gpu.name} ({gpu.memory_gib:g} GiB): {', '.join(too_big)}")
    budget = gpu.memory_gib * gpu.count * (1 - headroom)
    total = sum(memory * family.deployment.autoscaling.max_replicas * family.degree for _, family, memory, _ in rows)
    if total > budget:
        parts = sorted(((memory * f.deployment.autoscaling.max_replicas * f.degree, name,
                         f.deployment.autoscaling.max_replicas * f.degree, memory) for name, f, memory, _ in rows
                        if memory), reverse=True)
        detail = ", ".join(f"{name} {n} × {m:.1f} = {t:.1f} GiB" for t, name, n, m in parts)
        raise PlanError(f"over-committed: {total:.1f} GiB planned > {budget:.1f} GiB usable "
                        f"({gpu.count} × {gpu.name} {gpu.memory_gib:g} GiB with {headroom:.0%} headroom): {detail}")

    placed = _pack([(name, memory, share(family, memory, gpu)) for name, family, memory, _ in rows
                    for _ in range(family.deployment.autoscaling.max_replicas * family.degree)],
                   gpu, gpu.memory_gib * (1 - headroom))
    family_plans = [
        FamilyPlan(name=name, source=family.args.source, replicas=family.deployment.autoscaling.max_replicas,
                   memory_gib=memory, declared=declared, num_gpus=share(family, memory, gpu),
                   gpus=placed.get(name, []), ranks=family.degree)
        for name, family, memory, declared in rows
    ]
    loads = [GPULoad(index=i, memory_gib=round(sum(f.memory_gib * f.gpus.count(i) for f in family_plans), 2),
                     share=round(sum(f.num_gpus * f.gpus.count(i) for f in family_plans), 2)) for i in range(gpu.count)]
    return Plan(gpu=gpu, headroom=headroom, families=family_plans, loads=loads)


def share(family: FamilyDeployment, memory_gib: float, gpu: GPU) -> float:
    """A replica's GPU share: its memory's fraction of a GPU; a gang's rank takes a whole one (1)."""
    return 1.0 if family.degree > 1 and memory_gib else gpu_fraction(memory_gib, gpu)


def _pack(replicas: list[tuple[str, float, float]], gpu: GPU, per_gpu_gib: float) -> dict[str, list[int]]:
    """First-fit decreasing: each replica (largest first) on the first GPU with room in memory and share."""
    used = [0.0] * gpu.count
    shares = [0.0] * gpu.count
    placed: dict[str, list[int]] = {}
    for name, memory, share in sorted(replicas, key=lambda r: r[1], reverse=True):
        if not memory:
            continue
        index = next((i for i in range(gpu.count)
                      if used[i] + memory <= per_gpu_gib + 1e-9 and shares[i] + share <= 1 + 1e-9), None)
        if index is None:
            loads = ", ".join(f"GPU{i} {u:.1f} GiB" for i, u in enumerate(used))
            raise PlanError(f"cannot place a {name} replica ({memory:.1f} GiB) on any {gpu.name} within "
                            f"{per_gpu_gib:.1f} GiB per GPU; loads so far: {loads}")
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
