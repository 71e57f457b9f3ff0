"""POST /v1/images/generations, /controlled, /edits, /inpaint, /outpaint, /upscale."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from composition.auth import PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted
from composition.schemas.images import (ControlledGeneration, ImageEdit, ImageGeneration, ImageInpaint,
                                        ImageOutpaint, ImagesResult, ImageUpscale)
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



def _tool(path: str, schema: type[BaseModel]) -> None:
    """`POST /v1/images{path}`: the image tools' routes, each submitting its body as the routes above do."""
    async def tool(body, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                   idempotency_key: IdempotencyKey = None) -> JSONResponse:
        return await submit(services, principal, workflows.images, body, idempotency_key)

    tool.__annotations__["body"] = schema
    router.post(path, responses=RESPONSES, name=path.strip("/"))(tool)


for _path, _schema in (("/inpaint", ImageInpaint), ("/outpaint", ImageOutpaint), ("/upscale", ImageUpscale)):
    _tool(_path, _schema)
