"""Projects: POST/GET /v1/projects, GET /v1/projects/{id}, its statistics, its zip export, and import of such a
zip."""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Response, UploadFile

from composition.archive import IMPORTABLE_TYPES, build_zip, read_zip
from composition.auth import PrincipalDep
from composition.catalogue import ProjectTemplate
from composition.deps import ServicesDep, TaskIdPath
from composition.errors import ApiError
from composition.schemas.common import Id
from composition.schemas.projects import ProjectCreate, ProjectStats
from composition.store.assets import AssetInfo
from composition.store.projects import Project
from models.images import ACCEPTED_FORMATS, inspect_header

router = APIRouter(prefix="/v1/projects", tags=["projects"])
IMPORT_LIMIT_FACTOR = 20  # an archive may hold this many uploads' worth of bytes


@router.post("", status_code=201)
async def create(body: ProjectCreate, services: ServicesDep, principal: PrincipalDep) -> Project:
    template = services.catalogue.project_templates.get(body.template) if body.template else None
    if body.template and template is None:
        raise ApiError(422, "invalid_request", f"template: unknown template {body.template!r}", "template")
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
    return await services.projects.get(project_id, owner=principal.user_id)


@router.get("/{project_id}/stats")
async def stats(project_id: TaskIdPath, services: ServicesDep, principal: PrincipalDep) -> ProjectStats:
    """Its tasks by status and kind, their run time, and its assets by type and size."""
    project = await services.projects.get(project_id, owner=principal.user_id)
    tasks = [t for t in await asyncio.gather(*(services.tasks.get(i) for i in project.tasks)) if t]
    found = await asyncio.gather(*(services.assets.info(a, user=project.owner) for a in project.assets),
                                 return_exceptions=True)
    assets = [info for info in found if isinstance(info, AssetInfo)]  # deleted files are not counted
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
    project = await services.projects.get(project_id, owner=principal.user_id)
    tasks = [record.model_dump(exclude={"request"}) for t in project.tasks if (record := await services.tasks.get(t))]
    infos = [await services.assets.info(a, user=principal.user_id) for a in project.assets]
    assets = {info.id: services.assets.path(info.id).read_bytes() for info in infos}
    manifest = {"format": "montage-project/1", "project": project.model_dump(), "tasks": tasks,
                "assets": [info.model_dump() for info in infos]}
    data = await asyncio.to_thread(build_zip, manifest, assets)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="project-{project_id}.zip"'})


@router.post("/import", status_code=201)
async def import_project(file: Annotated[UploadFile, File(description="a zip made by /export")],
                         services: ServicesDep, principal: PrincipalDep,
                         user_id: Annotated[Id | None, Query()] = None) -> Project:
    """A new project from an exported zip; every asset is re-hashed and type-checked before it is stored."""
    limit = services.args.max_upload_bytes * IMPORT_LIMIT_FACTOR
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"file: larger than {limit} bytes", "file")
    manifest, blobs = await asyncio.to_thread(read_zip, data, limit)
    types = {a.get("id"): a.get("content_type") for a in manifest.get("assets", []) if isinstance(a, dict)}
    user_id = principal.user(user_id)
    stored = [await _store(services, asset_id, blob, types.get(asset_id), user_id or "")
              for asset_id, blob in blobs.items()]
    source = manifest["project"]
    template = services.catalogue.project_templates.get(str(source.get("template") or ""))  # defaults from here only
    project = await services.projects.create(str(source.get("name") or "imported")[:200],
                                             str(source.get("description") or "")[:2000], user_id or "",
                                             template.key if template else "", template.defaults if template else None)
    await services.projects.add_assets(project.id, stored)
    return await services.projects.get(project.id)


async def _store(services, asset_id: str, blob: bytes, content_type: Any, owner: str) -> str:
    if content_type not in IMPORTABLE_TYPES:
        raise ApiError(422, "invalid_archive", f"file: asset {asset_id} has no importable content type", "file")
    size = None
    if content_type.startswith("image/"):
        try:  # the app's own GIFs (video previews) come back too; uploads stay PNG, JPEG or WEBP
            fmt, *size = inspect_header(blob, "file", formats=ACCEPTED_FORMATS | {"GIF"})
        except ValueError as exc:
            raise ApiError(422, "invalid_archive", f"file: asset {asset_id}: {exc}", "file") from None
        if content_type != f"image/{fmt.lower()}":
            raise ApiError(422, "invalid_archive", f"file: asset {asset_id} is {fmt}, not {content_type}", "file")
    info = await services.assets.put(blob, content_type, "import", owner, tuple(size) if size else None)
    if info.id != asset_id:
        raise ApiError(422, "invalid_archive", f"file: asset {asset_id} does not match its content", "file")
    return info.id
