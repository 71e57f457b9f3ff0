"""POST /openai/v1/images/generations and /openai/v1/images/edits: OpenAI's Images API over the native image workflow
(the same dedup, variants, quotas, auth and limits); a call waits for its images (`composition.openai.wait_s`)."""
from __future__ import annotations

import asyncio
import base64
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from composition.auth import Principal, PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.routers.assets import store_upload
from composition.schemas.images import ImagesResult
from composition.schemas.openai_images import (
    OpenAIImage,
    OpenAIImageEdit,
    OpenAIImageGeneration,
    OpenAIImagesResponse,
)
from composition.services import Services
from composition.submit import Queued, enqueue, outcome
from composition.workflows.registry import Workflows
from models.errors import InvalidRequest
from models.images import mask_png, transparent

router = APIRouter(prefix="/openai/v1/images", tags=["openai"])


@router.post("/generations", response_model_exclude_none=True)
async def generations(body: OpenAIImageGeneration, request: Request, response: Response, services: ServicesDep,
                      workflows: WorkflowsDep, principal: PrincipalDep,
                      idempotency_key: IdempotencyKey = None) -> OpenAIImagesResponse:
    """`images.generate`: `model` names a family (sdxl, flux) or an alias (`composition.openai.models`)."""
    native = body.to_native(services.args.openai, services.defaults_of)
    result = await outcome(services, await _enqueued(services, principal, workflows, native, idempotency_key, response))
    return await answer(request, services, principal, result, body.response_format)


@router.post("/edits", response_model_exclude_none=True)
async def edits(body: Annotated[OpenAIImageEdit, Form(media_type="multipart/form-data")], request: Request,
                response: Response, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                idempotency_key: IdempotencyKey = None) -> OpenAIImagesResponse:
    """`images.edit`: the uploaded image (stored as an upload of the caller) edited by FLUX.1 Kontext, or with a
    `mask` inpainted (its transparent pixels, stored as a white-on-black mask of the caller)."""
    owner = principal.user(body.user) or ""
    asset = await store_upload(services, body.image, owner, "image")
    mask_id = None
    if body.mask is not None:
        drawn = await store_upload(services, body.mask, owner, "mask")
        if (drawn.width, drawn.height) != (asset.width, asset.height):
            raise InvalidRequest("mask", f"mask is {drawn.width}x{drawn.height}, the image {asset.width}x{asset.height}")
        raw = await services.asset_bytes(drawn.id, "mask", owner)
        data = await asyncio.to_thread(lambda: mask_png(transparent(raw)))
        mask_id = (await services.assets.put(data, "image/png", "mask", owner, drawn.size)).id
    native = body.to_native(services.args.openai, services.defaults_of, asset.id, mask_id)
    result = await outcome(services, await _enqueued(services, principal, workflows, native, idempotency_key, response))
    return await answer(request, services, principal, result, body.response_format)


async def _enqueued(services: Services, principal: Principal, workflows: Workflows, native: Any,
                    idempotency_key: str | None, response: Response) -> dict[str, Any] | Queued:
    """`submit.enqueue` on the image workflow; the answer names the task (`X-Task-Id`) as the native routes do."""
    queued = await enqueue(services, principal, workflows.images, native, idempotency_key)
    if isinstance(queued, Queued):
        response.headers["X-Task-Id"] = queued.task_id
    return queued


async def answer(request: Request, services: Services, principal: Principal, result: dict[str, Any],
                 response_format: str | None) -> OpenAIImagesResponse:
    """The native result in OpenAI's shape: absolute asset URLs on this server, or the PNG bytes in base64."""
    images, base, data = ImagesResult.model_validate(result), str(request.base_url).rstrip("/"), []
    for image in images.images:
        if response_format == "b64_json":
            png = await services.asset_bytes(image.asset_id, "image", principal.user_id)
            data.append(OpenAIImage(b64_json=base64.b64encode(png).decode(), revised_prompt=images.prompt_used))
        else:
            data.append(OpenAIImage(url=base + image.url, revised_prompt=images.prompt_used))
    return OpenAIImagesResponse(created=int(time.time()), data=data)
