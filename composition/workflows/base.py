"""What a workflow sees while it runs a task: its id, user, stage reporting, cancellation and step cache."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from config import keys

if TYPE_CHECKING:
    from composition.services import Services

R = TypeVar("R", bound=BaseModel)


class TaskCancelled(Exception):
    """The task was cancelled; the runner stops between steps."""


@dataclass
class TaskContext:
    task_id: str
    user_id: str
    services: Services

    async def stage(self, name: str, progress: float = 0.0) -> None:
        """Enters a stage; raises `TaskCancelled` if the task was cancelled meanwhile."""
        if await self.services.tasks.is_cancelled(self.task_id):
            raise TaskCancelled(name)
        await self.services.tasks.set_stage(self.task_id, name, progress)

    async def wait_for(self, family: str, units: int) -> None:
        """The task waits for `family`'s replicas (stage "waiting", with its queue position and an ETA) until a
        replica starts its model work, `units` of it (pixel-frame-steps: `work_units`); raises `TaskCancelled` if the
        task was cancelled meanwhile."""
        if await self.services.tasks.is_cancelled(self.task_id):
            raise TaskCancelled("waiting")
        cost = await self.services.timings.get(family)
        await self.services.tasks.wait_for(self.task_id, family, cost.ms(units) if cost else None)

    async def cached_step(self, name: str) -> Any | None:
        """A step this task finished on an earlier attempt (JSON), or None."""
        found = await self.services.redis.hget(keys.task_steps(self.task_id), name)
        return json.loads(found) if found else None

    async def save_step(self, name: str, value: Any) -> None:
        pipe = self.services.redis.pipeline(transaction=True)
        pipe.hset(keys.task_steps(self.task_id), name, json.dumps(value))
        pipe.expire(keys.task_steps(self.task_id), self.services.args.task_ttl_s)
        await pipe.execute()


class Workflow(Generic[R]):
    """One task kind: `request_type` is what the task stores; `run` returns the API result as a dict."""

    kind: ClassVar[str]
    request_type: ClassVar[type[BaseModel]]

    def __init__(self, services: Services) -> None:
        self.services = services

    async def plan(self, body: Any) -> R:
        """Ingress side: checks what the body refers to and resolves defaults into the task's request."""
        return body

    async def run(self, ctx: TaskContext, request: R) -> dict[str, Any]:
        raise NotImplementedError

    def handle(self, family: str):
        return self.services.handle(family)
