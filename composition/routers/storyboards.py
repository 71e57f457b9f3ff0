"""POST /v1/storyboards."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from composition.auth import PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted
from composition.schemas.storyboards import StoryboardBody, StoryboardOut
from composition.streaming import SSE_CONTENT, stream
from composition.submit import submit

router = APIRouter(prefix="/v1/storyboards", tags=["storyboards"])


@router.post("", responses={200: {"model": StoryboardOut, "content": SSE_CONTENT},
                                  202: {"model": Accepted}})
async def storyboard(body: StoryboardBody, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
    if body.stream:
        return await stream(services, principal, workflows.storyboards, body, idempotency_key)
    return await submit(services, principal, workflows.storyboards, body, idempotency_key)
