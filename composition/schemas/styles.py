"""Style profiles of souls (characters): look, art style and generation defaults."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from composition.schemas.common import Body


class StyleProfile(Body):
    """What a soul looks like and how it is drawn; prompts of souls and selfies start from it."""

    name: str = Field(default="", max_length=100)
    prompt: str = Field(min_length=1, max_length=1000, description="look and art style, e.g. 'a red-haired sailor, ink'")
    negative_prompt: str = Field(default="", max_length=1000)
    model: Literal["sdxl", "flux"] = "flux"
    width: int | None = Field(default=None, ge=8, le=2048, multiple_of=8)
    height: int | None = Field(default=None, ge=8, le=2048, multiple_of=8)
    steps: int | None = Field(default=None, ge=1, le=100)


class StyleEntry(StyleProfile):
    soul_id: str
