"""Forks: a new task from a finished task's kept step state (POST /v1/tasks/{task_id}/fork)."""
from __future__ import annotations

from pydantic import Field

from composition.schemas.common import Id, Prompt, TaskBody, wait_field
from composition.schemas.images import Loras
from models.types import MAX_SEED


class ForkBody(TaskBody):
    """What the fork changes: from the parent's state after `step`, the steps left run with these."""

    step: int | None = Field(default=None, ge=1, le=100,
                             description="the parent's kept step to start from (its task's `kept_steps`); none: the "
                                         "middle one (the earlier of two)")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED,
                             description="re-noises the state by `strength` with this seed's noise (forks differ); "
                                         "None: the parent's seed, no noise")
    strength: float = Field(default=0.3, ge=0.0, le=1.0,
                            description="with a seed: noise added at the step's own noise level, times this")
    prompt: Prompt | None = Field(default=None, description="None: the parent's prompt")
    loras: Loras | None = Field(default=None, description="None: the parent's adapters")
    user_id: Id | None = None
    project_id: Id | None = None
    wait_s: float = wait_field(60)


class ForkOf(ForkBody):
    """A fork request as planned: the body and the parent task it names."""

    parent: str
