"""POST /v1/selfies, GET /v1/selfies/cities."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from composition.auth import PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted
from composition.schemas.selfies import SelfieBody, SelfieOut
from composition.submit import submit

router = APIRouter(prefix="/v1/selfies", tags=["selfies"])


@router.post("", responses={200: {"model": SelfieOut}, 202: {"model": Accepted}})
async def selfie(body: SelfieBody, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                 idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await submit(services, principal, workflows.selfies, body, idempotency_key)


@router.get("/cities")
async def cities(services: ServicesDep) -> dict[str, Any]:
    """The built-in catalogue: cities with their landmarks, and the known moods."""
    catalogue = services.catalogue
    return {"cities": [city.model_dump() for city in catalogue.cities.values()], "moods": catalogue.moods}
