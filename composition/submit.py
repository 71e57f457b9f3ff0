"""The one submit path of every generation route: plan, cache, charge, reserve, queue, and answer the contract's
way: 200 with the result within the wait, else 202."""
from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from composition.auth import Principal, charge
from composition.errors import STORE_DOWN, ApiError, NotFound
from composition.services import Services
from composition.webhooks import subscription_for
from composition.workflows.base import Workflow
from models.errors import InvalidRequest
from records.task_record import TaskRecord


def task_response(record: TaskRecord, own: dict[str, Any]) -> JSONResponse:
    """A task's answer: its result (with `own`, a joining request's fields), its error, or 202."""
    headers = {"X-Task-Id": record.id}
    if record.status == "succeeded":
        return JSONResponse((record.result or {}) | own, 200, headers=headers)
    if record.terminal:
        error = task_error(record)
        return JSONResponse(error.body() | {"task_id": record.id}, error.status, headers=headers)
    return accepted(record.id, record.status)


def task_error(record: TaskRecord) -> ApiError:
    """What a failed or cancelled task answers: its own error, or 409 `cancelled`."""
    if record.status == "cancelled":
        return ApiError(409, "cancelled", "the task was cancelled")
    error = record.error or {}
    return ApiError(error.get("status", 500), error.get("code", "failed"), error.get("message", "task failed"),
                    error.get("field"))


def accepted(task_id: str, status: str = "queued") -> JSONResponse:
    return JSONResponse({"task_id": task_id, "status": status, "status_url": f"/v1/tasks/{task_id}"}, 202,
                        headers={"X-Task-Id": task_id})


def fingerprint(body: BaseModel) -> str:
    """What an Idempotency-Key is bound to: the request body, however long the client waits for it."""
    return hashlib.sha256(body.model_dump_json(exclude={"wait_s"}).encode()).hexdigest()


class Queued(NamedTuple):
    """A request's task, how long the request waits for it, and the result fields it answers in its own name where it
    joined another request's task (single-flight)."""

    task_id: str
    wait_s: float
    own: dict[str, Any] = {}


async def enqueue(services: Services, principal: Principal, workflow: Workflow, body: Any,
                  idempotency_key: str | None = None) -> dict[str, Any] | Queued:
    """The body, acting for the caller's user with its project's defaults: a retry under an Idempotency-Key already
    used for it is its first task (running or ended: no second charge); otherwise it is planned into a job (reading
    only), a cached result is returned at once, or the caller's quota is charged, the job reserves what it needs and
    a task is created (or joined by single-flight) on the caller's lane, its webhook subscribed. A result served
    without a task sends no webhook."""
    body = await with_project_defaults(services, workflow.kind, as_user(body, principal))
    webhook = await subscription_for(services, principal, body)
    bound_to = fingerprint(body) if idempotency_key else None
    earlier = await services.tasks.idempotent(body.user_id or "", workflow.kind, idempotency_key) \
        if idempotency_key else None
    if earlier is not None and earlier.fingerprint not in (None, bound_to):
        raise InvalidRequest("Idempotency-Key", "already used for a different request")
    own: dict[str, Any] = {}
    if earlier is not None:  # a retry of the same request, even after its task ended: the same task, no charge
        task_id = earlier.id
    else:
        job = await workflow.plan(body)
        project_id = getattr(body, "project_id", None)
        if (hit := await workflow.cached(job)) is not None:
            return await served(services, project_id, hit)
        await charge(services, principal, workflow.quota)
        reserved = await workflow.reserve(job)
        if isinstance(reserved, dict):
            return await served(services, project_id, reserved)
        task_id, created = await services.tasks.create(
            workflow.kind, reserved.model_dump(mode="json"), body.user_id or "", principal.lane_for(body.priority),
            project_id, idempotency_key, workflow.flight(reserved), bound_to, principal.weight, principal.tier_name)
        own = {} if created else workflow.own_answer(reserved)
    if webhook is not None:
        await services.webhooks.subscribe(task_id, webhook)
    return Queued(task_id, workflow.wait_s(body), own)


async def submit(services: Services, principal: Principal, workflow: Workflow, body: Any,
                 idempotency_key: str | None = None) -> JSONResponse:
    """Every generation route: `enqueue`, then the result within the workflow's wait (200), else 202."""
    queued = await enqueue(services, principal, workflow, body, idempotency_key)
    if isinstance(queued, dict):
        return JSONResponse(queued)
    try:
        return task_response(await services.tasks.wait(queued.task_id, queued.wait_s), queued.own)
    except STORE_DOWN:  # the task is stored: answer with its id, so the client can poll it later
        return accepted(queued.task_id)


async def outcome(services: Services, queued: dict[str, Any] | Queued) -> dict[str, Any]:
    """The result of an enqueued request, its task awaited up to its wait (a synchronous API's answer): raises the
    task's error when it failed or was cancelled, and 504 naming the task when it runs on past the wait."""
    if isinstance(queued, dict):
        return queued
    record = await services.tasks.wait(queued.task_id, queued.wait_s)
    if record is None:
        raise NotFound(f"task {queued.task_id}")
    if record.status == "succeeded":
        return (record.result or {}) | queued.own
    if record.terminal:
        raise task_error(record)
    raise ApiError(504, "timeout", f"not finished within {queued.wait_s:g} s; it runs on as task {record.id}: "
                                   f"/v1/tasks/{record.id}", headers={"X-Task-Id": record.id})


async def served(services: Services, project_id: str | None, result: dict[str, Any]) -> dict[str, Any]:
    """A result answered without a task (from cache, a repeated variant): it joins the request's project too."""
    if project_id:
        await services.projects.add_result(project_id, result)
    return result


async def with_project_defaults(services: Services, kind: str, body: Any) -> Any:
    """The body with the fields it left out taken from its project's defaults for this kind of task (a project made
    from a template); 404 naming `project_id` for an unknown project."""
    if not getattr(body, "project_id", None):
        return body
    project_defaults = await services.projects.defaults(body.project_id)
    if project_defaults is None:
        raise NotFound(f"project {body.project_id}", "project_id")
    fields = type(body).model_fields
    defaults = {name: value for name, value in project_defaults.get(kind, {}).items()
                if name in fields and name not in body.model_fields_set}
    return type(body).model_validate(body.model_dump() | defaults) if defaults else body


def as_user(body: Any, principal: Principal) -> Any:
    """The body with `user_id` set to the authenticated user (bodies only claim a user when auth is off)."""
    user = principal.user(body.user_id)
    return body if user == body.user_id else body.model_copy(update={"user_id": user})
