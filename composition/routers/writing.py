"""POST /v1/writing, GET /v1/writing/styles."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from composition.auth import PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted
from composition.schemas.writing import WritingBody, WritingOut
from composition.submit import submit

router = APIRouter(prefix="/v1/writing", tags=["writing"])


@router.post("", responses={200: {"model": WritingOut}, 202: {"model": Accepted}})
async def writing(body: WritingBody, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                  idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await submit(services, principal, workflows.writing, body, idempotency_key)


@router.get("/styles")
async def styles(services: ServicesDep) -> dict[str, Any]:
    return {"styles": [style.model_dump() for style in services.catalogue.writing_styles.values()]}
