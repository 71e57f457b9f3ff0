"""Prompt optimisation."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from composition.schemas.common import Body, Id, Prompt, wait_field
from models.types import PromptMode, PromptTarget


class PromptOptimize(Body):
    prompt: Prompt
    mode: PromptMode = "general"
    target: PromptTarget = "image"
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
