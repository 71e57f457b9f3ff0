"""POST /v1/prompts/optimize."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from composition.auth import PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted
from composition.schemas.prompts import OptimizedOut, PromptOptimize
from composition.streaming import SSE_CONTENT, stream
from composition.submit import submit

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])


@router.post("/optimize", responses={200: {"model": OptimizedOut, "content": SSE_CONTENT},
                                          202: {"model": Accepted}})
async def optimize(body: PromptOptimize, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                   idempotency_key: IdempotencyKey = None) -> JSONResponse:
    if body.stream:
        return await stream(services, principal, workflows.prompts, body, idempotency_key)
    return await submit(services, principal, workflows.prompts, body, idempotency_key)
