"""POST /v1/images/generations, /controlled, /edits, /inpaint, /outpaint."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from composition.auth import PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted
from composition.schemas.images import (ControlledGeneration, ImageEdit, ImageGeneration, ImageInpaint,
                                        ImageOutpaint, ImagesResult)
from composition.submit import submit

router = APIRouter(prefix="/v1/images", tags=["images"])
RESPONSES = {200: {"model": ImagesResult}, 202: {"model": Accepted}}


@router.post("/generations", responses=RESPONSES)
async def generations(body: ImageGeneration, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                      idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await submit(services, principal, workflows.images, body, idempotency_key)


@router.post("/controlled", responses=RESPONSES)
async def controlled(body: ControlledGeneration, services: ServicesDep, workflows: WorkflowsDep,
                     principal: PrincipalDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await submit(services, principal, workflows.images, body, idempotency_key)


@router.post("/edits", responses=RESPONSES)
async def edits(body: ImageEdit, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await submit(services, principal, workflows.images, body, idempotency_key)


@router.post("/inpaint", responses=RESPONSES)
async def inpaint(body: ImageInpaint, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                  idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await submit(services, principal, workflows.images, body, idempotency_key)


@router.post("/outpaint", responses=RESPONSES)
async def outpaint(body: ImageOutpaint, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                   idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await submit(services, principal, workflows.images, body, idempotency_key)
