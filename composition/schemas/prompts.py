"""Prompt optimisation."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from composition.schemas.common import Streamed, Id, Prompt, TaskBody, wait_field
from models.types import PromptMode, PromptTarget


# The seed app's Chinese mode names, accepted as aliases of the English ones
MODE_ALIASES = {"通用型": "general", "通用": "general", "艺术型": "artistic", "艺术": "artistic",
                "电影型": "cinematic", "电影感": "cinematic", "电影": "cinematic"}


def _mode(value: Any) -> Any:
    return MODE_ALIASES.get(value.strip(), value.strip()) if isinstance(value, str) else value


ModeIn = Annotated[PromptMode, BeforeValidator(_mode), Field(
    description="general, artistic or cinematic; or 通用型, 艺术型, 电影型 (answers use the English name)")]


class PromptOptimize(TaskBody, Streamed):
    prompt: Prompt
    mode: ModeIn = "general"
    target: PromptTarget = "image"
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0: greedy; else sampled from `seed`")
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="the same seed gives the same text")
    user_id: Id | None = None
    project_id: Id | None = None
    wait_s: float = wait_field(60)


class OptimizedOut(BaseModel):
    prompt: str
    optimized: str
    mode: PromptMode
    target: PromptTarget
    fallback: bool
    metadata: dict[str, Any]
