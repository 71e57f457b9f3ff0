"""POST /v1/images/generations, /v1/images/controlled, /v1/images/edits."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from composition.auth import PrincipalDep
from composition.metrics import service_metrics
from composition.deps import IdempotencyKey, ServicesDep, WorkflowsDep
from composition.schemas.common import Accepted
from composition.schemas.images import ControlledGeneration, ImageEdit, ImageGeneration, ImagesResult
from composition.submit import as_user, submit, with_project_defaults

router = APIRouter(prefix="/v1/images", tags=["images"])
RESPONSES = {200: {"model": ImagesResult}, 202: {"model": Accepted}}


async def _images(body: ImageGeneration | ControlledGeneration | ImageEdit, services, workflows, principal,
                  idempotency_key: str | None) -> JSONResponse:
    """A cache hit answers at once; a miss joins the task already rendering the same variants, or queues one."""
    body = await with_project_defaults(services, workflows.images.kind, as_user(body, principal))
    job = await workflows.images.plan(body)
    hit = await workflows.images.cached(job)
    instruments = service_metrics()
    instruments.dedup.inc(1, {"match": job.match})
    instruments.cache.inc(1, {"result": "miss" if hit is None else "hit"})
    if hit is not None:
        return JSONResponse(hit)
    return await submit(services, principal, workflows.images.kind, job, body.wait_s, body.user_id, body.project_id,
                        idempotency_key, flight=job.flight(), body=body)


@router.post("/generations", responses=RESPONSES)
async def generations(body: ImageGeneration, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                      idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _images(body, services, workflows, principal, idempotency_key)


@router.post("/controlled", responses=RESPONSES)
async def controlled(body: ControlledGeneration, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _images(body, services, workflows, principal, idempotency_key)


@router.post("/edits", responses=RESPONSES)
async def edits(body: ImageEdit, services: ServicesDep, workflows: WorkflowsDep, principal: PrincipalDep,
                idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _images(body, services, workflows, principal, idempotency_key)
