"""Souls' images: per-user variant delivery, seen marks, variant pools."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from composition.schemas.common import TEXT_FIELDS, AssetRef, Body, Id, Match
from composition.schemas.videos import VideoOptions


class SoulImageOut(BaseModel):
    variant_id: str
    prompt_key: str
    image: AssetRef
    cache_hit: bool
    repeat: bool = Field(default=False, description="the user had seen every variant and the pool is at its cap")
    match: Match
    metadata: dict[str, Any] = Field(default={}, description="how the variant was made: model, batch, replica, timings")


class SoulVideoBody(VideoOptions):
    """A soul's clip: the user's unseen variant for `cue` (as GET /v1/souls/{soul_id}/image), then animated."""

    user_id: Id | None = Field(default=None, description="required unless authenticated")
    cue: str = Field(default="", max_length=500)


class SoulVideoQuery(SoulVideoBody):
    """The body as query parameters (GET /v1/souls/{soul_id}/video)."""

    model_config = TEXT_FIELDS


class SoulVideo(SoulVideoBody):
    """The body with its path's soul."""

    soul_id: Id


class SoulVideoOut(SoulImageOut):
    """The variant (its `metadata` is the image's), its clip and the clip's details."""

    video: AssetRef
    gif: AssetRef | None = None
    clip: dict[str, Any] = Field(description="num_frames, fps, width, height, seed and metadata of the clip")


class SeenBody(Body):
    user_id: Id


class SeenOut(BaseModel):
    variant_id: str
    user_id: str
    seen: bool


class VariantOut(BaseModel):
    variant_id: str
    seed: int
    image: AssetRef
    deliveries: int
    created_at: float


class VariantsOut(BaseModel):
    prompt_key: str
    prompt: str
    variants: list[VariantOut]


class UserSeenOut(BaseModel):
    user_id: str
    variants: list[str]
