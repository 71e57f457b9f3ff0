"""Projects: POST/GET /v1/projects, GET /v1/projects/{id}, its statistics, its zip export, and import of such a
zip."""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, File, Query, Response, UploadFile

from composition.archive import export_project, import_project
from composition.auth import PrincipalDep
from composition.catalogue import ProjectTemplate
from composition.deps import ServicesDep, TaskIdPath
from composition.errors import ApiError
from composition.schemas.common import Id
from composition.schemas.projects import ProjectCreate, ProjectImport, ProjectStats
from composition.schemas.projects import Project
from models.errors import InvalidRequest

router = APIRouter(prefix="/v1/projects", tags=["projects"])
IMPORT_LIMIT_FACTOR = 20  # an archive may hold this many uploads' worth of bytes


@router.post("", status_code=201)
async def create(body: ProjectCreate, services: ServicesDep, principal: PrincipalDep) -> Project:
    template = services.catalogue.project_templates.get(body.template) if body.template else None
    if body.template and template is None:
        raise InvalidRequest("template", f"unknown template {body.template!r}")
    return await services.projects.create(body.name, body.description or (template.description if template else ""),
                                          principal.user(body.user_id) or "", body.template or "",
                                          template.defaults if template else None)


@router.get("/templates")
async def templates(services: ServicesDep) -> dict[str, list[ProjectTemplate]]:
    """Starting points: each names defaults, per task kind, for the requests made in a project made from it."""
    return {"templates": list(services.catalogue.project_templates.values())}


@router.get("")
async def list_projects(services: ServicesDep, principal: PrincipalDep,
                        user_id: Annotated[Id | None, Query()] = None) -> dict[str, list[Project]]:
    return {"projects": await services.projects.list(principal.user(user_id))}


@router.get("/{project_id}")
async def get_project(project_id: TaskIdPath, services: ServicesDep, principal: PrincipalDep) -> Project:
    return await services.project(project_id, principal.user_id)


@router.get("/{project_id}/stats")
async def stats(project_id: TaskIdPath, services: ServicesDep, principal: PrincipalDep) -> ProjectStats:
    """Its tasks by status and kind, their run time, and its assets by type and size."""
    project = await services.project(project_id, principal.user_id)
    tasks = [t for t in await asyncio.gather(*(services.tasks.get(i) for i in project.tasks)) if t]
    found = await asyncio.gather(*(services.assets.info(a, project.owner) for a in project.assets))
    assets = [info for info in found if info]  # deleted files are not counted
    created = [task.created_at for task in tasks]
    return ProjectStats(
        project_id=project.id, tasks=len(tasks), tasks_by_status=Counter(t.status for t in tasks),
        tasks_by_kind=Counter(t.kind for t in tasks),
        task_seconds=round(sum(t.updated_at - t.started_at for t in tasks if t.terminal and t.started_at), 3),
        assets=len(assets), asset_bytes=sum(a.bytes for a in assets),
        assets_by_type=Counter(a.content_type for a in assets),
        first_task_at=min(created, default=None), last_task_at=max(created, default=None))


@router.get("/{project_id}/export", response_class=Response)
async def export(project_id: TaskIdPath, services: ServicesDep, principal: PrincipalDep) -> Response:
    """A zip of project.json (project, tasks, asset metadata) and every asset's bytes."""
    data = await export_project(services, await services.project(project_id, principal.user_id), principal.user_id)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="project-{project_id}.zip"'})


@router.post("/import", status_code=201, responses={200: {"model": ProjectImport,
                                                          "description": "this archive was imported before"}})
async def import_archive(file: Annotated[UploadFile, File(description="a zip made by /export")], services: ServicesDep,
                         principal: PrincipalDep, response: Response,
                         user_id: Annotated[Id | None, Query()] = None) -> ProjectImport:
    """A new project from an exported zip, with its finished tasks (records and results) and its assets, each
    re-hashed and type-checked before it is stored; the same archive again answers the project it made (200)."""
    limit = services.args.max_upload_bytes * IMPORT_LIMIT_FACTOR
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"file: larger than {limit} bytes", "file")
    imported = await import_project(services, data, principal.user(user_id) or "", limit)
    if not imported.created:
        response.status_code = 200
    return imported
