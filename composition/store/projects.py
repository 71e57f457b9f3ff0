"""Projects: a named group of tasks and assets, owned by a user."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from composition.schemas.projects import Project
from config import keys


class ImportRecord(BaseModel):
    """What importing one archive made: the project, and each archived task's id → its id here."""

    project_id: str = Field(description="empty while the import runs")
    task_ids: dict[str, str] = {}


IMPORT_CLAIM_S = 600  # an import that died holds its archive no longer than this


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

    async def get(self, project_id: str, owner: str | None = None) -> Project | None:
        """The project with its tasks and assets; None when missing or owned by someone other than `owner`."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.project(project_id))
        pipe.smembers(keys.project_tasks(project_id))
        pipe.smembers(keys.project_assets(project_id))
        raw, tasks, assets = await pipe.execute()
        if not raw:
            return None
        record = {k.decode(): v.decode() for k, v in raw.items()}
        project = Project.model_validate(record | {"defaults": json.loads(record.get("defaults") or "{}"),
                                                   "tasks": sorted(t.decode() for t in tasks),
                                                   "assets": sorted(a.decode() for a in assets)})
        return None if owner is not None and project.owner != owner else project

    async def defaults(self, project_id: str) -> dict[str, dict[str, Any]] | None:
        """A project's request defaults per task kind (one field read: the request path's check that it exists);
        None when it does not exist."""
        found = await self.client.hmget(keys.project(project_id), "id", "defaults")
        return None if found[0] is None else json.loads(found[1] or "{}")

    async def list(self, owner: str | None = None) -> list[Project]:
        """An owner's projects, or every project when no owner is named (auth off, no user_id)."""
        ids = await self.client.zrevrange(keys.projects(owner) if owner else keys.projects_index(), 0, -1)
        return [project for i in ids if (project := await self.get(i.decode()))]

    async def begin_import(self, owner: str, digest: str) -> ImportRecord | None:
        """Claims importing the archive whose sha256 is `digest` for `owner`: None when this caller imports it
        (then `end_import`), else what the earlier import of it made (its project id empty while it runs)."""
        key = keys.project_import(owner or "-", digest)
        if await self.client.set(key, ImportRecord(project_id="").model_dump_json(), nx=True, ex=IMPORT_CLAIM_S):
            return None
        found = await self.client.get(key)
        return ImportRecord.model_validate_json(found) if found else ImportRecord(project_id="")

    async def end_import(self, owner: str, digest: str, made: ImportRecord | None) -> None:
        """Keeps what the import made (for good), or, when it failed (`made` None), frees the archive."""
        key = keys.project_import(owner or "-", digest)
        await (self.client.set(key, made.model_dump_json()) if made else self.client.delete(key))

    async def add_result(self, project_id: str, result: dict[str, Any]) -> None:
        """Links every asset of a result (a task's, or one served from cache) to the project."""
        await self.add_assets(project_id, asset_ids(result))

    async def add_assets(self, project_id: str, asset_ids: list[str]) -> None:
        if asset_ids:
            await self.client.sadd(keys.project_assets(project_id), *asset_ids)


def asset_ids(value: Any) -> list[str]:
    """Every `asset_id` inside a result."""
    if isinstance(value, dict):
        return [*([value["asset_id"]] if isinstance(value.get("asset_id"), str) else []),
                *(i for v in value.values() for i in asset_ids(v))]
    if isinstance(value, list):
        return [i for v in value for i in asset_ids(v)]
    return []
