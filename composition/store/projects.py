"""Projects: a named group of tasks and assets, owned by a user."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from composition.errors import not_found
from config import keys


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


class ProjectStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def create(self, name: str, description: str = "", owner: str = "", template: str = "",
                     defaults: dict[str, dict[str, Any]] | None = None) -> Project:
        project = Project(id=uuid.uuid4().hex, name=name, description=description, owner=owner,
                          created_at=time.time(), template=template, defaults=defaults or {})
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.project(project.id), mapping=project.model_dump(exclude={"tasks", "assets", "defaults"}) |
                  {"defaults": json.dumps(project.defaults)})
        pipe.zadd(keys.projects(owner or "-"), {project.id: project.created_at})
        pipe.zadd(keys.projects_index(), {project.id: project.created_at})
        await pipe.execute()
        return project

    async def get(self, project_id: str, owner: str | None = None, field: str = "project_id") -> Project:
        """The project with its tasks and assets; 404 when missing or owned by someone else."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.project(project_id))
        pipe.smembers(keys.project_tasks(project_id))
        pipe.smembers(keys.project_assets(project_id))
        raw, tasks, assets = await pipe.execute()
        if not raw:
            raise not_found(f"project {project_id}", field)
        record = {k.decode(): v.decode() for k, v in raw.items()}
        project = Project.model_validate(record | {"defaults": json.loads(record.get("defaults") or "{}"),
                                                   "tasks": sorted(t.decode() for t in tasks),
                                                   "assets": sorted(a.decode() for a in assets)})
        if owner is not None and project.owner != owner:
            raise not_found(f"project {project_id}", field)
        return project

    async def defaults(self, project_id: str, field: str = "project_id") -> dict[str, dict[str, Any]]:
        """A project's request defaults per task kind (one field read: the request path's check that it exists);
        404 naming `field` when it does not."""
        found = await self.client.hmget(keys.project(project_id), "id", "defaults")
        if found[0] is None:
            raise not_found(f"project {project_id}", field)
        return json.loads(found[1] or "{}")

    async def list(self, owner: str | None = None) -> list[Project]:
        """An owner's projects, or every project when no owner is named (auth off, no user_id)."""
        ids = await self.client.zrevrange(keys.projects(owner) if owner else keys.projects_index(), 0, -1)
        return [await self.get(i.decode()) for i in ids]

    async def add_assets(self, project_id: str, asset_ids: list[str]) -> None:
        if asset_ids:
            await self.client.sadd(keys.project_assets(project_id), *asset_ids)

    async def add_tasks(self, project_id: str, task_ids: list[str]) -> None:
        if task_ids:
            await self.client.sadd(keys.project_tasks(project_id), *task_ids)
