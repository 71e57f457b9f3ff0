"""POST /v1/videos/generations, GET /v1/videos/estimate."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from composition.auth import PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted, VideoModel
from composition.schemas.videos import VideoEstimate, VideoGeneration, VideoOut
from composition.submit import submit
from models.types import MAX_FRAMES, Side

router = APIRouter(prefix="/v1/videos", tags=["videos"])


@router.post("/generations", responses={200: {"model": VideoOut}, 202: {"model": Accepted}})
async def generations(body: VideoGeneration, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                      idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await submit(services, principal, workflows.videos, body, idempotency_key)


@router.get("/estimate")
async def estimate(workflows: WorkflowsDep, model: VideoModel = "svd",
                   num_frames: Annotated[int | None, Query(ge=2, le=MAX_FRAMES)] = None,
                   steps: Annotated[int | None, Query(ge=1, le=100)] = None,
                   width: Annotated[Side | None, Query()] = None,
                   height: Annotated[Side | None, Query()] = None) -> VideoEstimate:
    return await workflows.videos.estimate(model, num_frames, steps, width, height)
