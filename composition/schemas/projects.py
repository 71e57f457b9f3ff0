"""Projects group tasks and assets."""
from __future__ import annotations

from pydantic import BaseModel, Field

from composition.schemas.common import Body, Id, text


class ProjectCreate(Body):
    name: text(200)
    description: str = Field(default="", max_length=2000)
    template: str | None = Field(default=None, max_length=64, description="a key of GET /v1/projects/templates: "
                                 "requests made in the project take its defaults for the fields they leave out")
    user_id: Id | None = None


class ProjectStats(BaseModel):
    project_id: str
    tasks: int
    tasks_by_status: dict[str, int]
    tasks_by_kind: dict[str, int]
    task_seconds: float = Field(description="summed run time of its finished tasks (start to end)")
    assets: int
    asset_bytes: int
    assets_by_type: dict[str, int]
    first_task_at: float | None = None
    last_task_at: float | None = None
