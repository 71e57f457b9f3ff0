"""Storyboards: theme or script → scenes → keyframes → clips → one video."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from composition.schemas.common import Streamed, AssetRef, Id, TaskBody, text, wait_field
from models.types import Side, StoryboardRequest


class StoryboardBody(TaskBody, Streamed):
    theme: text(2000) | None = None
    script: text(20_000) | None = None
    num_scenes: int = Field(default=4, ge=1, le=12)
    style: str | None = Field(default=None, max_length=200)
    scene_seconds: float | None = Field(default=None, gt=0, le=30, description="None: each scene's own duration")
    fps: int | None = Field(default=None, ge=1, le=30)
    width: Side | None = None
    height: Side | None = None
    user_id: Id | None = None
    project_id: Id | None = None
    wait_s: float = wait_field(0)

    @model_validator(mode="after")
    def _one_source(self) -> StoryboardBody:
        self.llm_request()
        return self

    def llm_request(self) -> StoryboardRequest:
        return StoryboardRequest(theme=self.theme, script=self.script, num_scenes=self.num_scenes, style=self.style,
                                 scene_seconds=self.scene_seconds or 4.0)


class Exports(BaseModel):
    json_: AssetRef = Field(alias="json")
    text: AssetRef

    model_config = {"populate_by_name": True}


class StoryboardOut(BaseModel):
    scenes: list[dict[str, Any]]
    fallback: bool
    keyframes: list[AssetRef]
    clips: list[AssetRef]
    video: AssetRef
    gif: AssetRef
    export: Exports
