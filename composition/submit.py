"""Queues a task and answers the contract's way: 200 with the result within `wait_s`, else 202."""
from __future__ import annotations

import hashlib
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from composition.auth import Principal, charge
from composition.errors import STORE_DOWN, ApiError, error_body
from composition.services import Services
from composition.store.tasks import TaskRecord
from composition.workflows.base import Workflow


def task_response(record: TaskRecord) -> JSONResponse:
    headers = {"X-Task-Id": record.id}
    if record.status == "succeeded":
        return JSONResponse(record.result, 200, headers=headers)
    if record.status == "failed":
        error = record.error or {}
        body = error_body(error.get("code", "failed"), error.get("message", "task failed"), error.get("field"))
        return JSONResponse(body | {"task_id": record.id}, error.get("status", 500), headers=headers)
    if record.status == "cancelled":
        return JSONResponse(error_body("cancelled", "the task was cancelled") | {"task_id": record.id}, 409,
                            headers=headers)
    return accepted(record.id, record.status)


def accepted(task_id: str, status: str = "queued") -> JSONResponse:
    return JSONResponse({"task_id": task_id, "status": status, "status_url": f"/v1/tasks/{task_id}"}, 202,
                        headers={"X-Task-Id": task_id})


def fingerprint(body: BaseModel) -> str:
    """What an Idempotency-Key is bound to: the request body, however long the client waits for it."""
    return hashlib.sha256(body.model_dump_json(exclude={"wait_s"}).encode()).hexdigest()


async def submit(services: Services, principal: Principal, kind: str, job: BaseModel, wait_s: float,
                 user_id: str | None, project_id: str | None = None, idempotency_key: str | None = None,
                 flight: str | None = None, body: BaseModel | None = None) -> JSONResponse:
    """Charges the caller's quota, then creates (or joins, by Idempotency-Key or single-flight) a task on the
    caller's lane and waits up to `wait_s` for it; `project_id` was checked by `with_project_defaults`."""
    bound_to = fingerprint(body or job) if idempotency_key else None
    earlier = await services.tasks.idempotent(user_id or "", kind, idempotency_key) if idempotency_key else None
    if earlier is not None and earlier.fingerprint not in (None, bound_to):
        raise ApiError(422, "invalid_request", "Idempotency-Key: already used for a different request",
                       "Idempotency-Key")
    if earlier is None:  # a retry of the same request neither charges again nor queues another task
        await charge(services, principal, kind)
    task_id = earlier.id if earlier else (await services.tasks.create(
        kind, job.model_dump(mode="json"), user_id or "", principal.lane, project_id, idempotency_key, flight,
        bound_to))[0]
    try:
        return task_response(await services.tasks.wait(task_id, wait_s))
    except STORE_DOWN:  # the task is stored: answer with its id, so the client can poll it later
        return accepted(task_id)


async def plan_and_submit(services: Services, principal: Principal, workflow: Workflow, body: Any,
                          idempotency_key: str | None, wait_s: float | None = None) -> JSONResponse:
    """The common route: the workflow plans the body (acting for the caller's user, with its project's defaults)
    into a task request, then it is queued and awaited."""
    body = await with_project_defaults(services, workflow.kind, as_user(body, principal))
    job = await workflow.plan(body)
    return await submit(services, principal, workflow.kind, job, body.wait_s if wait_s is None else wait_s,
                        body.user_id, body.project_id, idempotency_key, body=body)


async def with_project_defaults(services: Services, kind: str, body: Any) -> Any:
    """The body with the fields it left out taken from its project's defaults for this kind of task (a project made
    from a template); 404 naming `project_id` for an unknown project."""
    if not getattr(body, "project_id", None):
        return body
    project_defaults = await services.projects.defaults(body.project_id)
    fields = type(body).model_fields
    defaults = {name: value for name, value in project_defaults.get(kind, {}).items()
                if name in fields and name not in body.model_fields_set}
    return type(body).model_validate(body.model_dump() | defaults) if defaults else body


def as_user(body: Any, principal: Principal) -> Any:
    """The body with `user_id` set to the authenticated user (bodies only claim a user when auth is off)."""
    user = principal.user(body.user_id)
    return body if user == body.user_id else body.model_copy(update={"user_id": user})
