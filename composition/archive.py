"""Project archives: export as a zip of project.json + assets/<id>; import with zip-slip and zip-bomb guards.
Member names are never used as paths: each asset is re-hashed and stored by its own digest."""
from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

from composition.errors import ApiError

MEMBER = re.compile(r"^assets/([0-9a-f]{32})$")
MAX_MEMBERS = 1000
MAX_RATIO = 200  # uncompressed / compressed, per member
IMPORTABLE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "application/json",
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
