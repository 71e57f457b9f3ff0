"""Project archives: export as a zip of project.json + assets/<id>; import with zip-slip and zip-bomb guards.
Member names are never used as paths: each asset is re-hashed, type-checked and stored by its own digest."""
from __future__ import annotations

import asyncio
import io
import json
import re
import zipfile
from typing import Any

from composition.errors import ApiError
from composition.services import Services
from composition.store.projects import Project
from config.ids import HEX_ID
from models.errors import InvalidRequest
from models.images import ACCEPTED_FORMATS, inspect_header

MEMBER = re.compile(rf"^assets/({HEX_ID.strip('^$')})$")
MAX_MEMBERS = 1000
MAX_RATIO = 200  # uncompressed / compressed, per member
IMPORTABLE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "video/webm", "application/json",
                    "text/plain; charset=utf-8"}


def build_zip(manifest: dict[str, Any], assets: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.json", json.dumps(manifest, indent=2))
        for asset_id, data in assets.items():
            archive.writestr(f"assets/{asset_id}", data)
    return buffer.getvalue()


def _bad(message: str) -> ApiError:
    return ApiError(422, "invalid_archive", f"file: {message}", "file")


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """Reads a member with a hard cap, whatever its header claims."""
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        raise _bad(f"{info.filename} is compressed suspiciously well (zip bomb?)")
    with archive.open(info) as handle:
        data = handle.read(budget + 1)
    if len(data) > budget:
        raise _bad("archive expands beyond the import limit")
    return data


def read_zip(data: bytes, max_bytes: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest, asset id → bytes) from an archive made by `build_zip`; 422 naming `file` otherwise."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except zipfile.BadZipFile:
        raise _bad("not a zip archive") from None
    if len(members) > MAX_MEMBERS:
        raise _bad(f"more than {MAX_MEMBERS} members")
    budget = max_bytes
    manifest, assets = None, {}
    try:
        for info in members:
            if info.is_dir():
                continue
            if info.filename != "project.json" and not MEMBER.match(info.filename):
                raise _bad(f"unexpected member {info.filename[:100]!r}")
            content = _read(archive, info, budget)
            budget -= len(content)
            if info.filename == "project.json":
                manifest = json.loads(content)
            else:
                assets[MEMBER.match(info.filename).group(1)] = content
    except (zipfile.BadZipFile, RuntimeError, ValueError, EOFError):
        raise _bad("corrupt archive or manifest") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("project"), dict):
        raise _bad("project.json missing or malformed")
    return manifest, assets


async def export_project(services: Services, project: Project, user: str | None) -> bytes:
    """A zip of project.json (project, tasks, asset metadata) and every asset's bytes."""
    tasks = [record.model_dump(exclude={"request"}) for t in project.tasks if (record := await services.tasks.get(t))]
    infos = [info for a in project.assets if (info := await services.assets.info(a, user))]
    assets = {info.id: await services.assets.bytes_of(info.id) for info in infos}
    manifest = {"format": "montage-project/1", "project": project.model_dump(), "tasks": tasks,
                "assets": [info.model_dump() for info in infos]}
    return await asyncio.to_thread(build_zip, manifest, assets)


async def import_project(services: Services, data: bytes, owner: str, limit: int) -> Project:
    """A new project from an exported zip, owned by `owner`; its template's defaults come from the catalogue."""
    manifest, blobs = await asyncio.to_thread(read_zip, data, limit)
    types = {a.get("id"): a.get("content_type") for a in manifest.get("assets", []) if isinstance(a, dict)}
    stored = [await _store(services, asset_id, blob, types.get(asset_id), owner) for asset_id, blob in blobs.items()]
    source = manifest["project"]
    template = services.catalogue.project_templates.get(str(source.get("template") or ""))
    project = await services.projects.create(str(source.get("name") or "imported")[:200],
                                             str(source.get("description") or "")[:2000], owner,
                                             template.key if template else "", template.defaults if template else None)
    await services.projects.add_assets(project.id, stored)
    return await services.projects.get(project.id)


async def _store(services: Services, asset_id: str, blob: bytes, content_type: Any, owner: str) -> str:
    if content_type not in IMPORTABLE_TYPES:
        raise _bad(f"asset {asset_id} has no importable content type")
    size = None
    if content_type.startswith("image/"):
        try:  # the app's own GIFs (video previews) come back too; uploads stay PNG, JPEG or WEBP
            fmt, *size = inspect_header(blob, "file", formats=ACCEPTED_FORMATS | {"GIF"})
        except InvalidRequest as exc:
            raise _bad(f"asset {asset_id}: {exc.message}") from None
        if content_type != f"image/{fmt.lower()}":
            raise _bad(f"asset {asset_id} is {fmt}, not {content_type}")
    info = await services.assets.put(blob, content_type, "import", owner, tuple(size) if size else None)
    if info.id != asset_id:
        raise _bad(f"asset {asset_id} does not match its content")
    return info.id
