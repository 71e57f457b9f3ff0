"""Souls' variants: GET /v1/souls/{soul_id}/image, a soul's or a variant's clip, seen marks, variant pools, users'
seen lists."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from composition.auth import PrincipalDep
from composition.deps import IdempotencyKey, IdPath, ServicesDep, WorkflowsDep
from composition.errors import NotFound
from composition.schemas.common import PRIORITY, Accepted, AssetRef, Id
from composition.schemas.variants import (
    SeenBody,
    SeenOut,
    SoulImageOut,
    SoulVideo,
    SoulVideoBody,
    SoulVideoQuery,
    SoulVideoOut,
    UserSeenOut,
    VariantOut,
    VariantsOut,
)
from composition.schemas.videos import VideoGeneration, VideoOptions, VideoOut
from composition.submit import as_user, submit
from composition.workflows.variants import SoulImage
from config.composition import Lane
from records.webhooks import WebhookEvent

router = APIRouter(tags=["variants"])


@router.get("/v1/souls/{soul_id}/image", responses={200: {"model": SoulImageOut}, 202: {"model": Accepted}})
async def soul_image(soul_id: IdPath, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                     user_id: Annotated[Id | None, Query(description="required unless authenticated")] = None,
                     cue: Annotated[str, Query(max_length=500)] = "",
                     wait_s: Annotated[float, Query(ge=0, le=600, allow_inf_nan=False)] = 60,
                     webhook_url: Annotated[str | None, Query(max_length=2083)] = None,
                     webhook_events: Annotated[list[WebhookEvent] | None, Query()] = None,
                     priority: Annotated[Lane | None, Query(description=PRIORITY)] = None) -> JSONResponse:
    notify = {"webhook_url": webhook_url} | ({"webhook_events": webhook_events} if webhook_events else {})
    request = SoulImage(soul_id=soul_id, cue=cue, user_id=user_id, wait_s=wait_s, priority=priority, **notify)
    return await submit(services, principal, workflows.variants, request)


@router.post("/v1/souls/{soul_id}/video", responses={200: {"model": SoulVideoOut}, 202: {"model": Accepted}})
async def soul_video(soul_id: IdPath, body: SoulVideoBody, services: ServicesDep, workflows: WorkflowsDep,
                     principal: PrincipalDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """The user's unseen variant for `cue` (as the soul's image route delivers it), animated."""
    request = SoulVideo(soul_id=soul_id, **body.model_dump(exclude_unset=True))  # unset: a project may fill it
    return await submit(services, principal, workflows.soul_videos, request, idempotency_key)


@router.get("/v1/souls/{soul_id}/video", responses={200: {"model": SoulVideoOut}, 202: {"model": Accepted}})
async def soul_video_by_query(soul_id: IdPath, query: Annotated[SoulVideoQuery, Query()], services: ServicesDep,
                              workflows: WorkflowsDep, principal: PrincipalDep,
                              idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """The POST route's request as query parameters (`?user_id=&cue=&model=wan`), as the soul's image route takes
    them."""
    return await soul_video(soul_id, query, services, workflows, principal, idempotency_key)


@router.post("/v1/variants/{variant_id}/video", responses={200: {"model": VideoOut}, 202: {"model": Accepted}})
async def variant_video(variant_id: IdPath, body: VideoOptions, services: ServicesDep, workflows: WorkflowsDep,
                        principal: PrincipalDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A clip of one variant's image, as POST /v1/videos/generations makes of an upload."""
    variant = await services.variants.variant(variant_id)
    if variant is None:
        raise NotFound(f"variant {variant_id}", "variant_id")
    await services.asset(variant.asset_id, "variant_id", principal.user(body.user_id))  # the variant's, not an upload
    generation = VideoGeneration(image=variant.asset_id, **body.model_dump(exclude_unset=True))
    return await submit(services, principal, workflows.videos, generation, idempotency_key)


@router.post("/v1/variants/{variant_id}/seen")
async def seen(variant_id: IdPath, body: SeenBody, services: ServicesDep, principal: PrincipalDep) -> SeenOut:
    if await services.variants.variant(variant_id) is None:
        raise NotFound(f"variant {variant_id}", "variant_id")
    body = as_user(body, principal)
    await services.variants.mark_seen(variant_id, body.user_id)
    return SeenOut(variant_id=variant_id, user_id=body.user_id, seen=True)


@router.get("/v1/prompts/{prompt_key}/variants")
async def variants(prompt_key: IdPath, services: ServicesDep) -> VariantsOut:
    prompt = await services.prompt_index.prompt_of(prompt_key)
    if prompt is None:
        raise NotFound(f"prompt key {prompt_key}", "prompt_key")
    return VariantsOut(prompt_key=prompt_key, prompt=prompt, variants=[
        VariantOut(variant_id=v.id, seed=v.seed, deliveries=v.deliveries, created_at=v.created_at,
                   image=AssetRef.of(v.asset_id))
        for v in await services.variants.variants(prompt_key)])


@router.get("/v1/users/{user_id}/seen")
async def user_seen(user_id: IdPath, services: ServicesDep, principal: PrincipalDep) -> UserSeenOut:
    if principal.user_id and user_id != principal.user_id:
        raise NotFound(f"user {user_id}", "user_id")
    return UserSeenOut(user_id=user_id, variants=await services.variants.seen(user_id))
