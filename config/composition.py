"""Args of the composition layer: task runners, dedup, variants, uploads and the asset store."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


Lane = Literal["high", "normal", "low"]
LANES: tuple[Lane, ...] = ("high", "normal", "low")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunnerArgs(_Strict):
    """Task runners: consumers of the task streams."""

    concurrency: int = Field(default=16, ge=1, le=512, description="tasks one runner replica executes at once")
    claim_idle_s: float = Field(default=30.0, gt=0, description="a task silent this long is taken from its runner")
    heartbeat_s: float = Field(default=5.0, gt=0, description="how often a runner re-claims the tasks it works on")
    max_attempts: int = Field(default=3, ge=1, le=20)
    block_ms: int = Field(default=500, ge=1, description="XREADGROUP block time per poll")


class DedupArgs(_Strict):
    """Near-duplicate prompt reuse."""

    enabled: bool = True
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="cosine; None: the tuned default")
    lsh_tables: int | None = Field(default=None, ge=1, le=64)
    lsh_bits: int | None = Field(default=None, ge=1, le=32)


class CompositionArgs(_Strict):
    """Workflow-level settings shared by the ingress and the runners."""

    asset_dir: Path | None = Field(default=None, description="None: MONTAGE_ASSET_DIR (var/assets)")
    max_upload_bytes: int = Field(default=10 * 2**20, ge=1024)
    variant_cap: int = Field(default=8, ge=1, le=1000, description="most variants generated per prompt key")
    recent_landmarks: int = Field(default=3, ge=0, description="landmarks per soul/user/city avoided next time")
    idempotency_ttl_s: int = Field(default=86_400, ge=60)
    task_ttl_s: int = Field(default=7 * 86_400, ge=60, description="how long finished task records are kept")
    dedup: DedupArgs = Field(default_factory=DedupArgs)
