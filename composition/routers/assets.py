"""POST /v1/assets (multipart image upload), GET /v1/assets/{asset_id}."""
from __future__ import annotations

import asyncio
import re
from email.utils import formatdate
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.datastructures import Headers

from composition.auth import PrincipalDep
from composition.deps import AssetIdPath, ServicesDep
from composition.errors import ApiError
from composition.schemas.assets import AssetInfo
from composition.schemas.common import Id
from composition.services import Services
from models.errors import InvalidRequest
from models.formats import MEDIA_TYPES
from models.images import check_decodes, inspect_header

router = APIRouter(prefix="/v1/assets", tags=["assets"])
SINGLE_RANGE = re.compile(r"bytes=(\d+)-(\d*)|bytes=-(\d+)")


@router.post("", status_code=201)
async def upload(file: Annotated[UploadFile, File(description="PNG, JPEG or WEBP")], services: ServicesDep,
                 principal: PrincipalDep, user_id: Annotated[Id | None, Query()] = None) -> AssetInfo:
    """Stores an image under the digest of its bytes; size, format and pixel count are checked first.
    With auth, the upload is private to the caller (and to anyone else who uploads the same bytes)."""
    return await store_upload(services, file, principal.user(user_id) or "")


async def store_upload(services: Services, file: UploadFile, owner: str, field: str = "file") -> AssetInfo:
    """An uploaded image stored as `owner`'s asset; 413 or 415 naming `field` when too large or not an image."""
    limit = services.args.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"{field}: larger than {limit} bytes", field)
    try:
        fmt, width, height = inspect_header(data, field)
        await asyncio.to_thread(check_decodes, data, field)
    except InvalidRequest as exc:
        raise ApiError(415, "unsupported_media_type", str(exc), field) from None
    return await services.assets.put(data, MEDIA_TYPES[fmt.lower()], "upload", owner, (width, height))


DOWNLOAD_RESPONSES = {206: {"description": "the bytes a single `Range` asked for"},
                      307: {"description": "to a time-limited URL of the object store (asset_redirect_s)"},
                      416: {"description": "a `Range` outside the asset"}}


@router.get("/{asset_id}", response_class=StreamingResponse, responses=DOWNLOAD_RESPONSES)
@router.head("/{asset_id}", response_class=StreamingResponse, responses=DOWNLOAD_RESPONSES, operation_id="asset_head")
async def download(asset_id: AssetIdPath, request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    """The asset's bytes, streamed from the store (a single `Range` honoured), or a redirect to the object store;
    named `<id>.<extension>` of its content type (Content-Disposition)."""
    info = await services.asset(asset_id, "asset_id", principal.user_id)
    audience = "private" if services.assets.private else "public"  # no shared cache keeps a private asset
    expires_s = services.args.asset_redirect_s
    if expires_s and (url := await services.assets.signed_url(asset_id, expires_s)):
        return RedirectResponse(url, 307, headers={"Cache-Control": f"{audience}, no-store"})
    etag = f'"{asset_id}"'
    headers = {"Cache-Control": f"{audience}, max-age=31536000, immutable", "ETag": etag, "Accept-Ranges": "bytes",
               "Last-Modified": formatdate(info.created_at, usegmt=True),
               "Content-Disposition": f'inline; filename="{info.filename}"'}  # its extension follows its type
    start, end = 0, info.bytes
    if (wanted := _byte_range(request.headers, info.bytes, etag)) is not None:
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.bytes}"
    headers["Content-Length"] = str(end - start)
    status = 206 if wanted else 200
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=info.content_type)
    return StreamingResponse(services.assets.stream(asset_id, start, end), status, headers, info.content_type)


def _byte_range(headers: Headers, size: int, etag: str) -> tuple[int, int] | None:
    """[start, end) of a single `Range: bytes=first-last` or `bytes=-suffix`; None (the whole asset) without one, for
    several ranges, another unit, a malformed one, or an `If-Range` naming another version. 416 when outside."""
    found = SINGLE_RANGE.fullmatch(headers.get("range", ""))
    if not found or headers.get("if-range", etag) != etag:
        return None
    first, last, suffix = found.groups()
    if suffix is not None:
        start, end = max(size - int(suffix), 0), size
    elif last and int(last) < int(first):
        return None
    else:
        start, end = int(first), min(int(last) + 1, size) if last else size
    if start >= end:
        raise ApiError(416, "range_not_satisfiable", f"Range: outside the asset's {size} bytes", "Range",
                       headers={"Content-Range": f"bytes */{size}"})
    return start, end
