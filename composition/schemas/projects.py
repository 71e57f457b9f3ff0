"""Projects group tasks and assets."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from composition.schemas.common import Body, Id, text


class Project(BaseModel):
    id: str
    name: str
    description: str = ""
    owner: str = ""
    created_at: float
    template: str = ""
    defaults: dict[str, dict[str, Any]] = Field(default={}, description="task kind → request field defaults")
    tasks: list[str] = []
    assets: list[str] = []


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


class ProjectImport(Project):
    """The project an archive made: its tasks (finished ones) with their records and results, and its assets."""

    created: bool = Field(description="false: this archive was imported by this user before, and that project is "
                                      "answered again (200)")
    task_ids: dict[str, str] = Field(description="each archived task's id → its id here (the same unless taken)")
