"""POST /v1/writing, GET /v1/writing/styles."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted
from composition.schemas.writing import WritingBody, WritingOut
from composition.submit import submit

router = APIRouter(prefix="/v1/writing", tags=["writing"])


@router.post("", responses={200: {"model": WritingOut}, 202: {"model": Accepted}})
async def writing(body: WritingBody, services: ServicesDep, workflows: WorkflowsDep,
                  idempotency_key: IdempotencyKey = None) -> JSONResponse:
    job = await workflows.writing.plan(body)
    return await submit(services, workflows.writing.kind, job, body.wait_s, body.user_id, body.project_id,
                        idempotency_key)


@router.get("/styles")
async def styles(services: ServicesDep) -> dict[str, Any]:
    return {"styles": [style.model_dump() for style in services.catalogue.writing_styles.values()]}
