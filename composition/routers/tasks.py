"""Tasks: GET /v1/tasks, /v1/tasks/stats, /v1/tasks/{id}, /v1/tasks/{id}/events (SSE), DELETE /v1/tasks/{id},
POST /v1/tasks/{id}/fork."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from composition.auth import Principal, PrincipalDep
from composition.deps import IdempotencyKey, ServicesDep, TaskIdPath, WorkflowsDep
from composition.errors import ApiError, Conflict, NotFound
from composition.schemas.common import Accepted, Id
from composition.schemas.forks import ForkBody, ForkOf
from composition.schemas.images import ImagesResult
from composition.submit import submit
from composition.workflows.registry import KINDS
from records.task_record import STATUSES, TaskRecord

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
HIDDEN = {"request", "attempts"}
CREATOR_ONLY = {"user_id", "project_id"}  # not shown to users who joined another user's task


def view(record: TaskRecord, principal: Principal) -> dict[str, Any]:
    joined = principal.user_id and record.user_id != principal.user_id
    return record.model_dump(exclude=HIDDEN | CREATOR_ONLY if joined else HIDDEN)


@router.get("")
async def list_tasks(services: ServicesDep, principal: PrincipalDep, user_id: Annotated[Id | None, Query()] = None,
                     status: Annotated[str | None, Query(pattern="^(" + "|".join(STATUSES) + ")$")] = None,
                     kind: Annotated[Literal[KINDS] | None, Query()] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, list[dict[str, Any]]]:
    records = await services.tasks.list(principal.user(user_id), status, kind, limit)
    return {"tasks": [view(record, principal) for record in records]}


@router.get("/stats")
async def stats(services: ServicesDep) -> dict[str, Any]:
    return await services.tasks.stats()


async def _task(services, principal: Principal, task_id: str, creator_only: bool = False) -> TaskRecord:
    """The task, or a 404 when it does not exist or (with auth) is not the caller's: readable by its creator and
    by users who joined it through single-flight; cancellable by its creator only."""
    record, user = await services.tasks.get(task_id), principal.user_id
    if record is None or (user and record.user_id != user and (
            creator_only or not await services.tasks.listed_for(task_id, user))):
        raise NotFound(f"task {task_id}", "task_id")
    return record


@router.get("/{task_id}")
async def get_task(task_id: TaskIdPath, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """The task, with its webhooks (the caller's, with auth) and each delivery's attempts and last status."""
    record = view(await _task(services, principal, task_id), principal)
    webhooks = await services.webhooks.listed(task_id, principal.user_id)
    return record | {"webhooks": [webhook.model_dump() for webhook in webhooks]}


@router.delete("/{task_id}")
async def cancel_task(task_id: TaskIdPath, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """Cancels a queued or running task (work stops at the next step); 409 for a task that already succeeded or
    failed (cancelling a cancelled task again is a no-op)."""
    await _task(services, principal, task_id, creator_only=True)
    await services.tasks.cancel(task_id)
    record = await _task(services, principal, task_id)
    if record.status != "cancelled":
        raise Conflict("task_id", f"task already {record.status}")
    return view(record, principal)


@router.get("/{task_id}/events", response_class=StreamingResponse)
async def events(task_id: TaskIdPath, services: ServicesDep, principal: PrincipalDep) -> StreamingResponse:
    """Server-sent events: `data: {json}` per update, the last one carrying the terminal status; a job's previews
    (`event: preview`, `image` a JPEG data URL) and checkpoints (`event: checkpoint`) are named events."""
    await _task(services, principal, task_id)

    async def stream() -> AsyncIterator[str]:
        async for event in services.tasks.events(task_id):
            named = f"event: {event['event']}\n" if "event" in event else ""  # preview, checkpoint
            yield f"{named}data: {json.dumps(event)}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/{task_id}/fork", responses={200: {"model": ImagesResult}, 202: {"model": Accepted}})
async def fork(task_id: TaskIdPath, body: ForkBody, services: ServicesDep, workflows: WorkflowsDep,
               principal: PrincipalDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A new task from the task's kept state after `step` (`metadata.forked_from`); 404 for an unknown task or
    expired states, 403 for another user's task."""
    record = await services.tasks.get(task_id)
    if record is None:
        raise NotFound(f"task {task_id}", "task_id")
    if principal.user_id and record.user_id != principal.user_id:
        raise ApiError(403, "forbidden", f"task {task_id} is another user's", "task_id")
    request = ForkOf.model_validate(body.model_dump() | {"parent": task_id})
    return await submit(services, principal, workflows.forks, request, idempotency_key)
