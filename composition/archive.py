"""Project archives: export as a zip of project.json (project, tasks, asset metadata) + assets/<id>.<ext>;
import with zip-slip and zip-bomb guards. Member names are never used as paths: each asset is re-hashed, type-checked
and stored by its own digest. Importing keeps the finished tasks (their ids when free here) and is idempotent per
user and archive."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import zipfile
from typing import Any

from pydantic import Field, ValidationError

from composition.errors import ApiError, Conflict
from composition.schemas.assets import AssetInfo
from composition.schemas.projects import Project, ProjectImport
from composition.services import Services
from composition.store.projects import ImportRecord
from config.ids import HEX_ID
from models.errors import InvalidRequest
from models.formats import MEDIA_TYPES
from models.images import ACCEPTED_FORMATS, inspect_header
from records.task_record import TaskRecord

MEMBER = re.compile(rf"^assets/({HEX_ID.strip('^$')})(\.[a-z0-9]{{1,5}})?$")  # <id>.<ext>; older archives: <id>
MAX_MEMBERS = 1000
MAX_RATIO = 200  # uncompressed / compressed, per member
IMPORTABLE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "video/webm", "application/json",
                    "text/plain; charset=utf-8"}


class ArchivedTask(TaskRecord):
    """A task of project.json: a finished one keeps its server-made id."""

    id: str = Field(pattern=HEX_ID)


def build_zip(manifest: dict[str, Any], assets: dict[str, bytes]) -> bytes:
    """project.json and each asset as `assets/<file name>` (`<id>.<ext>` of its type)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.json", json.dumps(manifest, indent=2))
        for filename, data in assets.items():
            archive.writestr(f"assets/{filename}", data)
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
    tasks = [record.model_dump(exclude={"request", "preview"})
             for t in project.tasks if (record := await services.tasks.get(t))]
    infos: list[AssetInfo] = [info for a in project.assets if (info := await services.assets.info(a, user))]
    assets = {info.filename: await services.assets.bytes_of(info.id) for info in infos}
    manifest = {"format": "montage-project/1", "project": project.model_dump(), "tasks": tasks,
                "assets": [info.model_dump() for info in infos]}
    return await asyncio.to_thread(build_zip, manifest, assets)


async def import_project(services: Services, data: bytes, owner: str, limit: int) -> ProjectImport:
    """A new project from an exported zip, owned by `owner`, with the archive's finished tasks (their records and
    results; an id taken here gets a new one) and assets; its template's defaults come from the catalogue. The same
    archive imported again by the same owner answers the project it made then (`created` false)."""
    digest = hashlib.sha256(data).hexdigest()
    earlier = await services.projects.begin_import(owner, digest)
    if earlier is not None:
        if not earlier.project_id or (project := await services.projects.get(earlier.project_id)) is None:
            raise Conflict("file", "this archive is being imported already")
        return ProjectImport(**project.model_dump(), created=False, task_ids=earlier.task_ids)
    made: ImportRecord | None = None
    try:
        made = await _import(services, data, owner, limit)
    finally:
        await services.projects.end_import(owner, digest, made)
    project = await services.projects.get(made.project_id)
    return ProjectImport(**project.model_dump(), created=True, task_ids=made.task_ids)


async def _import(services: Services, data: bytes, owner: str, limit: int) -> ImportRecord:
    manifest, blobs = await asyncio.to_thread(read_zip, data, limit)
    tasks = _tasks(manifest.get("tasks", []))
    types = {a.get("id"): a.get("content_type") for a in manifest.get("assets", []) if isinstance(a, dict)}
    stored = [await _store(services, asset_id, blob, types.get(asset_id), owner) for asset_id, blob in blobs.items()]
    source = manifest["project"]
    template = services.catalogue.project_templates.get(str(source.get("template") or ""))
    project = await services.projects.create(str(source.get("name") or "imported")[:200],
                                             str(source.get("description") or "")[:2000], owner,
                                             template.key if template else "", template.defaults if template else None)
    await services.projects.add_assets(project.id, stored)
    task_ids = {task.id: await services.tasks.restore(task.model_copy(update={"user_id": owner,
                                                                              "project_id": project.id}))
                for task in tasks}
    return ImportRecord(project_id=project.id, task_ids=task_ids)


def _tasks(listed: Any) -> list[ArchivedTask]:
    """The archive's finished tasks (a task still queued or running when exported has no result to keep)."""
    if not isinstance(listed, list) or len(listed) > MAX_MEMBERS:
        raise _bad(f"project.json: tasks must be a list of at most {MAX_MEMBERS}")
    try:
        tasks = [ArchivedTask.model_validate(task) for task in listed]
    except ValidationError as exc:
        where = ".".join(map(str, exc.errors()[0]["loc"]))
        raise _bad(f"project.json: a task is malformed ({where})") from None
    return [task for task in tasks if task.terminal]


async def _store(services: Services, asset_id: str, blob: bytes, content_type: Any, owner: str) -> str:
    if content_type not in IMPORTABLE_TYPES:
        raise _bad(f"asset {asset_id} has no importable content type")
    size = None
    if content_type.startswith("image/"):
        try:  # the app's own GIFs (video previews) come back too; uploads stay PNG, JPEG or WEBP
            fmt, *size = inspect_header(blob, "file", formats=ACCEPTED_FORMATS | {"GIF"})
        except InvalidRequest as exc:
            raise _bad(f"asset {asset_id}: {exc.message}") from None
        if content_type != MEDIA_TYPES[fmt.lower()]:
            raise _bad(f"asset {asset_id} is {fmt}, not {content_type}")
    info = await services.assets.put(blob, content_type, "import", owner, tuple(size) if size else None)
    if info.id != asset_id:
        raise _bad(f"asset {asset_id} does not match its content")
    return info.id
