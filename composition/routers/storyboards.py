"""POST /v1/storyboards."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted
from composition.schemas.storyboards import StoryboardBody, StoryboardOut
from composition.submit import submit

router = APIRouter(prefix="/v1/storyboards", tags=["storyboards"])


@router.post("", responses={200: {"model": StoryboardOut}, 202: {"model": Accepted}})
async def storyboard(body: StoryboardBody, services: ServicesDep, workflows: WorkflowsDep,
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
    job = await workflows.storyboards.plan(body)
    return await submit(services, workflows.storyboards.kind, job, body.wait_s, body.user_id, body.project_id,
                        idempotency_key)
