"""POST /v1/assets (multipart image upload), GET /v1/assets/{asset_id}."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import FileResponse

from composition.deps import AssetIdPath, ServicesDep
from composition.errors import ApiError
from composition.schemas.common import Id
from composition.store.assets import AssetInfo
from models.images import inspect_header

router = APIRouter(prefix="/v1/assets", tags=["assets"])
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@router.post("", status_code=201)
async def upload(file: Annotated[UploadFile, File(description="PNG, JPEG or WEBP")], services: ServicesDep,
                 user_id: Annotated[Id | None, Query()] = None) -> AssetInfo:
    """Stores an image under the digest of its bytes; size, format and pixel count are checked first."""
    limit = services.args.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"file: larger than {limit} bytes", "file")
    try:
        fmt, width, height = inspect_header(data, "file")
    except ValueError as exc:
        raise ApiError(415, "unsupported_media_type", str(exc), "file") from None
    return await services.assets.put(data, CONTENT_TYPES[fmt], "upload", user_id or "", (width, height))


@router.get("/{asset_id}", response_class=FileResponse)
async def download(asset_id: AssetIdPath, services: ServicesDep) -> FileResponse:
    info = await services.assets.info(asset_id)
    return FileResponse(services.assets.path(asset_id), media_type=info.content_type,
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})
