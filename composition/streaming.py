"""`stream: true` on an LLM route: the request is queued as ever, and answered with Server-Sent Events: `delta`
events (`{"delta": text}`, the model's answer as it is decoded, from its task's `text` events), then one `result`
event: the JSON the request answers without streaming (`status` its HTTP status: 200 with the result, else the
task's error)."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from composition.auth import Principal
from composition.services import Services
from composition.submit import enqueue, task_error
from composition.workflows.base import Workflow


# The 200 of a route that streams with `stream: true`: its JSON model, or these events (in the OpenAPI document)
SSE_CONTENT = {"text/event-stream": {"schema": {"type": "object", "description": "each event's JSON data: `delta` "
                                                                                 "events, then `result`"}}}


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def stream(services: Services, principal: Principal, workflow: Workflow, body: Any,
                 idempotency_key: str | None = None) -> StreamingResponse:
    queued = await enqueue(services, principal, workflow, body, idempotency_key)

    async def events() -> AsyncIterator[str]:
        if isinstance(queued, dict):  # served without a task (cache)
            yield _event("result", {"status": 200, "result": queued})
            return
        sent = ""
        async for update in services.tasks.events(queued.task_id):
            text = update.get("text") if update.get("event") == "text" else None
            if text is not None and text.startswith(sent) and len(text) > len(sent):
                yield _event("delta", {"task_id": queued.task_id, "delta": text[len(sent):]})
                sent = text
            if update.get("status") in ("succeeded", "failed", "cancelled") and "event" not in update:
                record = await services.tasks.get(queued.task_id)
                if record.status == "succeeded":
                    yield _event("result", {"status": 200, "task_id": record.id, "result": record.result})
                else:
                    error = task_error(record)
                    yield _event("result", {"status": error.status, "task_id": record.id, **error.body()})
                return

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if not isinstance(queued, dict):
        headers["X-Task-Id"] = queued.task_id
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
