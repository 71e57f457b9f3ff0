"""Selfies: a soul at a landmark of a city, in a mood; optionally animated."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from composition.schemas.common import AssetRef, Id, Match, TaskBody, VideoModel, text


class SelfieBody(TaskBody):
    soul_id: Id
    city_key: str = Field(min_length=1, max_length=64, description="a key of GET /v1/selfies/cities")
    mood: text(100) = Field(default="happy", description="a known mood key, or free text")
    user_id: Id
    video: VideoModel | None = None
    project_id: Id | None = None
    wait_s: float | None = Field(default=None, ge=0, le=600, description="default 60, or 0 with a video")


class SelfieOut(BaseModel):
    variant_id: str
    landmark_key: str
    city_key: str
    prompt_key: str
    image: AssetRef
    cache_hit: bool
    match: Match
    metadata: dict[str, Any] = Field(default={}, description="how the image was made: model, batch, replica, timings")
    video: AssetRef | None = None
    gif: AssetRef | None = None
