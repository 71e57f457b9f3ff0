"""Projects group tasks and assets."""
from __future__ import annotations

from pydantic import Field

from composition.schemas.common import Body, Id


class ProjectCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    user_id: Id | None = None
