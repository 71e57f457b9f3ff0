"""Writing: a word drawn in a style, guided by control maps of its rendered glyphs."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from composition.schemas.common import AssetRef, Id, Seed, TaskBody, text, wait_field
from models.types import Side


class WritingBody(TaskBody):
    word: str = Field(min_length=1, max_length=32)
    translation: text(64) | None = None
    style: str = Field(default="comic", min_length=1, max_length=64, description="a key of GET /v1/writing/styles")
    width: Side | None = None
    height: Side | None = None
    seed: Seed = 0
    user_id: Id | None = None
    project_id: Id | None = None
    wait_s: float = wait_field(60)


class WritingOut(BaseModel):
    image: AssetRef
    conditioning: dict[str, str] = Field(description="control type (and 'glyph') → URL of the conditioning image")
    controls: dict[str, float] = Field(description="control type → weight, from the style definition")
    prompt_used: str
    metadata: dict[str, Any]
