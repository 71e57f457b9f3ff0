"""Projects: POST/GET /v1/projects, GET /v1/projects/{id}, its zip export, and import of such a zip."""
from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Response, UploadFile

from composition.archive import IMPORTABLE_TYPES, build_zip, read_zip
from composition.auth import PrincipalDep
from composition.deps import ServicesDep, TaskIdPath
from composition.errors import ApiError
from composition.schemas.common import Id
from composition.schemas.projects import ProjectCreate
from composition.store.projects import Project
from models.images import ACCEPTED_FORMATS, inspect_header

router = APIRouter(prefix="/v1/projects", tags=["projects"])
IMPORT_LIMIT_FACTOR = 20  # an archive may hold this many uploads' worth of bytes


@router.post("", status_code=201)
async def create(body: ProjectCreate, services: ServicesDep, principal: PrincipalDep) -> Project:
    return await services.projects.create(body.name, body.description, principal.user(body.user_id) or "")


@router.get("")
async def list_projects(services: ServicesDep, principal: PrincipalDep,
                        user_id: Annotated[Id | None, Query()] = None) -> dict[str, list[Project]]:
    return {"projects": await services.projects.list(principal.user(user_id))}


@router.get("/{project_id}")
async def get_project(project_id: TaskIdPath, services: ServicesDep, principal: PrincipalDep) -> Project:
    return await services.projects.get(project_id, owner=principal.user_id)


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
    project = await services.projects.create(str(source.get("name") or "imported")[:200],
                                             str(source.get("description") or "")[:2000], user_id or "")
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
