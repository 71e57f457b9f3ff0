"""POST /v1/assets (multipart image upload), GET /v1/assets/{asset_id}."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import FileResponse

from composition.auth import PrincipalDep
from composition.deps import AssetIdPath, ServicesDep
from composition.errors import ApiError
from composition.schemas.common import Id
from composition.store.assets import AssetInfo
from models.errors import InvalidRequest
from models.images import inspect_header

router = APIRouter(prefix="/v1/assets", tags=["assets"])
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@router.post("", status_code=201)
async def upload(file: Annotated[UploadFile, File(description="PNG, JPEG or WEBP")], services: ServicesDep,
                 principal: PrincipalDep, user_id: Annotated[Id | None, Query()] = None) -> AssetInfo:
    """Stores an image under the digest of its bytes; size, format and pixel count are checked first.
    With auth, the upload is private to the caller (and to anyone else who uploads the same bytes)."""
    limit = services.args.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"file: larger than {limit} bytes", "file")
    try:
        fmt, width, height = inspect_header(data, "file")
    except InvalidRequest as exc:
        raise ApiError(415, "unsupported_media_type", str(exc), "file") from None
    owner = principal.user(user_id) or ""
    return await services.assets.put(data, CONTENT_TYPES[fmt], "upload", owner, (width, height))


@router.api_route("/{asset_id}", methods=["GET", "HEAD"], response_class=FileResponse)
async def download(asset_id: AssetIdPath, services: ServicesDep, principal: PrincipalDep) -> FileResponse:
    info = await services.asset(asset_id, "asset_id", principal.user_id)
    audience = "private" if services.assets.private else "public"  # no shared cache keeps a private asset
    return FileResponse(services.assets.path(asset_id), media_type=info.content_type,
                        headers={"Cache-Control": f"{audience}, max-age=31536000, immutable"})
