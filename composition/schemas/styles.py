"""Style profiles of souls (characters): look, art style and generation defaults."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from composition.schemas.common import AccelerationOption, Body, check_acceleration, text
from config.families import MAX_LORAS
from config.specs import families_with
from models.types import Lora, Side


class Style(BaseModel):
    """What a soul looks like and how it is drawn; prompts of souls and selfies start from it."""

    name: str = Field(default="", max_length=100)
    prompt: str = Field(min_length=1, max_length=1000, description="look and art style, e.g. 'a red-haired sailor, ink'")
    negative_prompt: str = Field(default="", max_length=1000)
    model: Literal[families_with("generate")] = "flux"
    width: Side | None = None
    height: Side | None = None
    steps: int | None = Field(default=None, ge=1, le=100)
    loras: list[Lora] = Field(default=[], max_length=MAX_LORAS,
                              description="LoRA adapters of its model, with their scales")
    acceleration: AccelerationOption = "none"

    @model_validator(mode="after")
    def _cached_family(self) -> Style:
        check_acceleration(self.acceleration, self.model)
        return self


class StyleProfile(Body, Style):
    """A soul's style as a request body (unknown fields are refused)."""

    prompt: text(1000) = Field(description="look and art style, e.g. 'a red-haired sailor, ink'")


class StyleEntry(Style):
    soul_id: str
