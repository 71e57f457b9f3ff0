"""Task-queue capacity: tasks/s through the real `TaskStore` + `TaskRunner` (Redis Streams, Lua transitions) with a
no-op workflow, and the enqueue → start delay read from the task hashes.

The workflow registry is fixed in production code, so the runner here is a `TaskRunner` built over a no-op workflow,
run in its own Ray actor (its own process, like the TaskRunner deployment) with the app's runner args. It uses a
separate Redis database, so the deployed app's runner never sees these tasks.
  1. saturation: `tasks` tasks created as fast as 16 producers can → tasks/s from first creation to last finish;
  2. delay: tasks created at half that rate, open loop → p50/p99 of started_at − created_at.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import ray
import redis.asyncio as aioredis
from pydantic import BaseModel

from bench.stats import percentiles
from composition.store.tasks import TaskStore
from composition.workflows.base import TaskContext, Workflow
from config import keys

PRODUCERS = 16
KIND = "noop"


class Noop(BaseModel):
    """A no-op task's request: nothing."""


class NoopWorkflow(Workflow[Noop]):
    """Succeeds at once with an empty result: all that is left to time is the task system."""

    kind = KIND
    job_type = Noop

    async def run(self, ctx: TaskContext, request: Noop) -> dict[str, Any]:
        return {}


@ray.remote(num_cpus=0.1)
class RunnerActor:
    """A `TaskRunner` over the no-op workflow, polling the task streams of `redis_url`."""

    def __init__(self, redis_url: str, composition: dict[str, Any], runner_args: dict[str, Any]) -> None:
        from composition.runner import TaskRunner
        from composition.services import build_services
        from config.composition import CompositionArgs, RunnerArgs

        services = build_services(CompositionArgs.model_validate(composition), redis_url, {}, {})
        self.runner = TaskRunner(services, {KIND: NoopWorkflow(services)}, RunnerArgs.model_validate(runner_args))
        self.loop: asyncio.Task | None = None  # held: the event loop keeps only a weak reference to its tasks

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop().create_task(self.runner.run())


async def _saturate(store: TaskStore, count: int) -> list[str]:
    ids: list[str] = []

    async def producer(share: int) -> None:
        for _ in range(share):
            ids.append((await store.create(KIND, {}))[0])

    await asyncio.gather(*(producer(count // PRODUCERS + (i < count % PRODUCERS)) for i in range(PRODUCERS)))
    return ids


async def _paced(store: TaskStore, count: int, rate: float) -> list[str]:
    """Open loop: task i is created at start + i / rate, whatever the runner does meanwhile."""
    start = time.perf_counter()

    async def create_at(index: int) -> str:
        await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
        return (await store.create(KIND, {}))[0]

    return list(await asyncio.gather(*(create_at(i) for i in range(count))))


async def _finished(client: aioredis.Redis, ids: list[str], timeout_s: float = 300.0) -> list[tuple[float, ...]]:
    """(created_at, started_at, updated_at) of every task once all have succeeded."""
    deadline = time.monotonic() + timeout_s
    while True:
        pipe = client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(keys.task(task_id), "status", "created_at", "started_at", "updated_at")
        rows = await pipe.execute()
        if all(row[0] == b"succeeded" for row in rows):
            return [tuple(float(value) for value in row[1:]) for row in rows]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(row[0] != b'succeeded' for row in rows)} no-op tasks unfinished")
        await asyncio.sleep(0.2)


async def _measure(redis_url: str, tasks: int) -> dict:
    client = aioredis.Redis.from_url(redis_url)
    store = TaskStore(client)
    try:
        stamps = await _finished(client, await _saturate(store, tasks))
        span = max(s[2] for s in stamps) - min(s[0] for s in stamps)
        throughput = tasks / span
        rate = throughput / 2
        paced = await _finished(client, await _paced(store, min(tasks, int(rate * 10)), rate))
        delays = [(started - created) * 1000.0 for created, started, _ in paced]
        return {"tasks": tasks, "tasks_per_s": round(throughput, 1), "delay_rate_per_s": round(rate, 1),
                "delay": percentiles(delays)}
    finally:
        await client.aclose()


def run(redis_url: str, app_args: dict[str, Any], tasks: int) -> dict:
    """`redis_url` must be a database of its own (the suite uses db 1 of its Redis); it is flushed first. The
    runner takes the app's composition and runner args."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    actor = RunnerActor.remote(redis_url, app_args.get("composition", {}), app_args["runner"].get("runner", {}))
    try:
        ray.get(actor.start.remote())
        return asyncio.run(_measure(redis_url, tasks))
    finally:
        ray.kill(actor)
