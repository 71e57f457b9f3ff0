"""Content credentials: POST /v1/provenance/check (an upload), GET /v1/assets/{asset_id}/provenance, POST
/v1/assets/{asset_id}/replay."""
from __future__ import annotations

import asyncio
import io
from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from PIL import Image, UnidentifiedImageError

from composition.auth import PrincipalDep
from composition.credentials.replay import replay as replay_recipe
from composition.schemas.provenance import Verdict
from composition.deps import AssetIdPath, ServicesDep, WorkflowsDep
from composition.errors import ApiError
from composition.schemas.provenance import AssetProvenance, ProvenanceCheck, ReplayOut
from composition.services import Services
from models.formats import MEDIA_TYPES
from models.media import decode_frames
from models.watermark import detect

router = APIRouter(tags=["provenance"])
VIDEO_BRANDS = {b"ftyp": "video/mp4"}
WEBM_HEADER = b"\x1aE\xdf\xa3"


@router.post("/v1/provenance/check")
async def check(file: Annotated[UploadFile, File(description="PNG, JPEG, WEBP, GIF, MP4 or WebM")],
                services: ServicesDep) -> ProvenanceCheck:
    """Whether a file carries Montage's watermark and a valid manifest, what the manifest says, and whether its
    pixels were changed after signing. 415 naming `file` for a file that is not a decodable image or video."""
    limit = services.args.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"file: larger than {limit} bytes", "file")
    content_type = _sniff(data)
    try:
        frames = await asyncio.to_thread(decode_frames, data, content_type)
    except ValueError:
        raise ApiError(415, "unsupported_media_type", f"file: not a decodable {content_type}", "file") from None
    detection, verdict = await asyncio.gather(asyncio.to_thread(detect, frames[0]),
                                              asyncio.to_thread(_verify, services, data, content_type))
    return ProvenanceCheck(content_type=content_type, watermark=detection, manifest=verdict,
                           montage=detection.found or verdict.state == "Trusted", pixels_changed=verdict.changed,
                           recipe=verdict.recipe)


@router.get("/v1/assets/{asset_id}/provenance")
async def provenance(asset_id: AssetIdPath, services: ServicesDep, principal: PrincipalDep) -> AssetProvenance:
    """The asset's recipe and its manifest, validated; 404 naming `asset_id` for an asset with no recipe."""
    recipe = await services.recipe(asset_id, "asset_id", principal.user_id)
    data = await services.assets.bytes_of(asset_id)
    verdict = await asyncio.to_thread(_verify, services, data, MEDIA_TYPES[recipe.format])
    return AssetProvenance(asset_id=asset_id, recipe=services.recipe_view(recipe), manifest=verdict)


@router.post("/v1/assets/{asset_id}/replay")
async def replay(asset_id: AssetIdPath, services: ServicesDep, workflows: WorkflowsDep,
                 principal: PrincipalDep) -> ReplayOut:
    """Renders the asset's recipe again on this deployment (no task, no quota) and compares the pixels: `identical`
    and the largest difference; a rendition replays the image it re-encodes. The recipe is shown as provenance
    shows it (the prompt only with `credentials.include_prompt`)."""
    return await replay_recipe(services, workflows.images, workflows.videos, asset_id, principal.user_id)


def _sniff(data: bytes) -> str:
    """The content type of an image or video upload, from its bytes; 415 naming `file` for anything else."""
    if data[4:8] in VIDEO_BRANDS:
        return VIDEO_BRANDS[data[4:8]]
    if data.startswith(WEBM_HEADER):
        return "video/webm"
    try:
        fmt = Image.open(io.BytesIO(data)).format
    except (UnidentifiedImageError, OSError):
        fmt = None
    if (fmt or "").lower() not in MEDIA_TYPES:
        raise ApiError(415, "unsupported_media_type", "file: not a PNG, JPEG, WEBP, GIF, MP4 or WebM", "file")
    return MEDIA_TYPES[fmt.lower()]


def _verify(services: Services, data: bytes, content_type: str) -> Verdict:
    """The manifest's verdict, or an empty one with content credentials off."""
    return services.signer.verify(data, content_type) if services.signer is not None else Verdict()

