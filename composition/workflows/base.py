"""A workflow is the whole of one feature: what its task stores, its quota, how a request is planned, served from
cache or reserved, and how its task runs. `TaskContext` is what it sees while a task runs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from composition.metrics import service_metrics
from config import keys
from config.composition import QuotaKind
from records.tasks import Span

if TYPE_CHECKING:
    from composition.services import Services

J = TypeVar("J", bound=BaseModel)


class TaskCancelled(Exception):
    """The task was cancelled; the runner stops between steps."""


@dataclass
class TaskContext:
    task_id: str
    user_id: str
    services: Services
    tier: str = ""  # the API key's tier ("" with auth off)
    shares: dict[str, float] | None = None  # the workflow's `shares`: its progress is the whole task's

    async def spend(self, family: str, metadata: Any) -> None:
        """Accounts a model result's device seconds (`metadata.gpu_seconds`) to the task, its user's day
        (`TierArgs.daily_gpu_seconds`) and the `montage_gpu_seconds` counter."""
        seconds = getattr(metadata, "gpu_seconds", None)
        if not seconds:
            return
        await self.services.tasks.add_gpu_seconds(self.task_id, seconds)
        await self.services.access.spend_gpu_seconds(self.user_id, seconds)
        service_metrics().gpu_seconds.inc(seconds, {"family": family, "tier": self.tier or "-"})

    async def check_cancelled(self, stage: str) -> None:
        """Raises `TaskCancelled` (naming `stage`) if the task was cancelled meanwhile."""
        if await self.services.tasks.is_cancelled(self.task_id):
            raise TaskCancelled(stage)

    async def stage(self, name: str, done: int = 0, parts: int = 1) -> None:
        """Enters a stage of `parts` parts, or counts those `done`; raises `TaskCancelled` if the task was cancelled
        meanwhile. Progress is the stage's (done / parts), or with `shares` the whole task's."""
        await self.check_cancelled(name)
        span = Span.of(self.shares, name, done, parts) if self.shares else None
        await self.services.tasks.set_stage(self.task_id, name, done / max(parts, 1), span)

    async def wait_for(self, family: str, units: int) -> None:
        """The task waits for `family`'s replicas (stage "waiting", or with `shares` its own stage; its queue
        position and an ETA) until a replica starts its model work, `units` of it (pixel-frame-steps: `work_units`);
        raises `TaskCancelled` if the task was cancelled meanwhile."""
        await self.check_cancelled("waiting")
        cost = await self.services.timings.get(family)
        await self.services.tasks.wait_for(self.task_id, family, cost.ms(units) if cost else None)

    async def wait_on(self, holder: str) -> None:
        """The task waits for task `holder`'s render of what it needs (stage "waiting": its progress and ETA are the
        holder's); raises `TaskCancelled` if the task was cancelled meanwhile."""
        await self.check_cancelled("waiting")
        await self.services.tasks.wait_on(self.task_id, holder)

    async def cached_step(self, name: str) -> Any | None:
        """A step this task finished on an earlier attempt (JSON), or None."""
        found = await self.services.redis.hget(keys.task_steps(self.task_id), name)
        return json.loads(found) if found else None

    async def save_step(self, name: str, value: Any) -> None:
        pipe = self.services.redis.pipeline(transaction=True)
        pipe.hset(keys.task_steps(self.task_id), name, json.dumps(value))
        pipe.expire(keys.task_steps(self.task_id), self.services.args.task_ttl_s)
        await pipe.execute()


class Workflow(Generic[J]):
    """One task kind. In the ingress (`composition.submit`): `plan` → `cached` → quota charge → `reserve` → a task
    storing the job (`job_type`, never the HTTP body); in the runner: `run` returns the API result as a dict."""

    kind: ClassVar[str]
    job_type: ClassVar[type[BaseModel]]
    quota: ClassVar[QuotaKind | None] = None  # the caller's daily quota each new task takes from
    # A task of several parts: each stage's share of its whole progress, in the order they run (the parts' model
    # steps move it within the stage, and it never goes back); None: progress is each stage's own
    shares: ClassVar[dict[str, float] | None] = None

    def __init__(self, services: Services) -> None:
        self.services = services

    async def plan(self, body: Any) -> J:
        """Resolves a request into its job, reading only: raises for what the body names wrongly or not found."""
        raise NotImplementedError

    def wait_s(self, body: Any) -> float:
        """How long the request waits for its result before answering 202."""
        return body.wait_s

    async def cached(self, job: J) -> dict[str, Any] | None:
        """A result served at once, with no task and no charge; None to go on."""
        return None

    async def reserve(self, job: J) -> J | dict[str, Any]:
        """After the charge, what the job claims in the stores (its prompt's place in the index, variant slots): the
        job to queue, or a result when there is nothing left to render."""
        return job

    def flight(self, job: J) -> str | None:
        """Single-flight identity: a request equal to a queued or running task's joins it."""
        return None

    def own_answer(self, job: J) -> dict[str, Any]:
        """The result fields a request that joined another's task answers in its own name (the task's otherwise)."""
        return {}

    async def run(self, ctx: TaskContext, job: J) -> dict[str, Any]:
        raise NotImplementedError

    def handle(self, family: str):
        return self.services.handle(family)
