"""The step scheduler against request-level serving, side by side in one run: `python -m bench.scheduling`.

The SDXL deployment class in-process (tiny weights, 64², this CPU) on an embedded Redis. "Request level" is what a
replica did before the scheduler: one call at a time (a lock around each, as `max_concurrent_batches=1`); "step
level" submits through the replica's own admission (`deployments/admission.py`: `CONCURRENT_BATCHES` group slots,
batches of up to 4, one slot kept for a user with nothing running) and its step scheduler. Nothing is asserted;
figures go to stdout and var/bench/scheduling.json.

1. Head-of-line: a high-lane 4-step image arrives while a low-lane 100-step job (the API's most) runs (at its step
   10): its latency against its solo latency (the same image alone through the same path), in step times.
2. Fairness: user A submits 20 jobs of 8 steps, then user B submits 1: B's wait (to its first step) and its latency,
   in job times.
3. Overhead: a lone 8-step job through the replica's admission and scheduler, against the model called directly and
   against the replica without either (Redis progress and cancellation checks in both).
4. Continuous batching: 16 clients arrive a quarter of a job time apart, each asking for one 64² image of 6 to 12
   steps (different step counts never share a request-level batch): images/s and mean latency of request-level
   batching (one group at a time, run to its end), the step scheduler without joining (`step_batch` 0), and with it.
The step scheduler's figures are taken with joining on (`step_batch` 8); the high-lane image of (1) pauses the
low-lane job rather than joining it (a turn holds one lane).
"""
from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from cluster.redis_server import EmbeddedRedis
from config import keys
from config.families import SDXLArgs, StepPolicy
from deployments.base import BATCH_DEFAULTS, Job
from deployments.families import SDXLDeployment
from models.types import ImageRequest

OUT = Path("var/bench/scheduling.json")


def _request(steps: int, seed: int) -> ImageRequest:
    return ImageRequest(prompt="a red kite", width=64, height=64, steps=steps, guidance=5.0, seed=seed)


class Bench:
    def __init__(self, replica: SDXLDeployment, store: redis.Redis, step_level: bool) -> None:
        self.replica, self.store, self.step_level = replica, store, step_level
        self.gate = asyncio.Lock()

    async def job(self, task_id: str, request: ImageRequest, lane: str, user: str) -> tuple[float, float, float]:
        """(submitted, first step, ended) times of one job."""
        task_id = f"bench-{task_id}-{self.step_level}"
        self.store.hset(keys.task(task_id), mapping={"id": task_id, "status": "running", "lane": lane,
                                                     "user_id": user})
        submitted = time.perf_counter()
        if self.step_level:  # the replica's own admission and batching, as Serve calls it
            run = asyncio.ensure_future(self.replica.generate(request, task_id))
            started = await self._first_step(task_id, run)
            await run
        else:
            async with self.gate:
                run = asyncio.ensure_future(self.replica.execute([Job(request, task_id)], self.replica.model.generate,
                                                                 self.replica.model.group_key, "denoising"))
                started = await self._first_step(task_id, run)
                await run
        return submitted, started, time.perf_counter()

    async def _first_step(self, task_id: str, run: asyncio.Future) -> float:
        while not run.done() and float(self.store.hget(keys.task(task_id), "progress") or 0) == 0:
            await asyncio.sleep(0.02)  # coarse: polling must not take a core from the model
        return time.perf_counter()


def head_of_line(bench: Bench, step_ms: float) -> dict[str, float]:
    """The high image's latency behind the low job, and alone through the same path (median of 3)."""
    async def scenario():
        low = asyncio.ensure_future(bench.job("low", _request(100, 1), "low", "ann"))
        while float(bench.store.hget(keys.task(f"bench-low-{bench.step_level}"), "progress") or 0) < 0.1:
            await asyncio.sleep(0.02)
        high = await bench.job("high", _request(4, 2), "high", "bob")
        await low
        return high

    solo_ms = statistics.median(_span(asyncio.run(bench.job(f"solo{i}", _request(4, 2), "high", "bob")))
                                for i in range(3))
    latency = _span(asyncio.run(scenario()))
    return dict(latency_ms=round(latency), solo_ms=round(solo_ms), extra_steps=round((latency - solo_ms) / step_ms, 1))


def _span(times: tuple[float, float, float]) -> float:
    submitted, _, ended = times
    return (ended - submitted) * 1000


def fairness(bench: Bench, job_ms: float) -> dict[str, float]:
    async def scenario():
        backlog = [asyncio.ensure_future(bench.job(f"a{i}", _request(8, 10 + i), "normal", "ann")) for i in range(20)]
        await asyncio.sleep(job_ms / 1000 / 2)
        single = await bench.job("b", _request(8, 50), "normal", "bob")
        await asyncio.gather(*backlog)
        return single

    submitted, started, ended = asyncio.run(scenario())
    return dict(wait_jobs=round((started - submitted) * 1000 / job_ms, 2),
                latency_jobs=round((ended - submitted) * 1000 / job_ms, 2))


def staggered(bench: Bench, job_ms: float) -> dict[str, float]:
    async def scenario():
        async def client(index: int):
            await asyncio.sleep(index * job_ms / 4000)
            return await bench.job(f"c{index}", _request(6 + 2 * (index % 4), 100 + index), "normal", f"u{index}")

        started = time.perf_counter()
        times = await asyncio.gather(*(client(i) for i in range(16)))
        return started, times

    started, times = asyncio.run(scenario())
    span = max(ended for _, _, ended in times) - started
    return dict(images_per_s=round(16 / span, 2),
                mean_latency_jobs=round(statistics.mean(e - s for s, _, e in times) * 1000 / job_ms, 2))


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        server = EmbeddedRedis(Path(data_dir), appendonly=False).start()
        try:
            store = redis.Redis.from_url(server.url)
            replica = SDXLDeployment(SDXLArgs(), server.url)
            replica.policy = StepPolicy(preview_every=0)
            model = replica.model
            model.generate([_request(8, 0)])  # warm-up
            store.hset(keys.task("lone"), mapping={"id": "lone", "status": "running", "lane": "normal"})

            def unscheduled() -> None:  # the replica without admission and scheduler
                saved, replica.scheduler = replica.scheduler, None
                try:
                    asyncio.run(replica.execute([Job(_request(8, 0), "lone")], model.generate, model.group_key, "d"))
                finally:
                    replica.scheduler = saved

            def admitted() -> None:  # admission, then the scheduler (no batch wait: the job is alone)
                asyncio.run(replica.generate(_request(8, 0), "lone"))

            replica._generate.set_batch_wait_timeout_s(0.0)
            samples: dict[str, list[float]] = {"direct": [], "admitted": [], "unscheduled": []}
            for _ in range(7):  # interleaved: this machine's speed drifts
                for name, call in (("direct", lambda: model.generate([_request(8, 0)])), ("admitted", admitted),
                                   ("unscheduled", unscheduled)):
                    samples[name].append(_timed(call))
            replica._generate.set_batch_wait_timeout_s(BATCH_DEFAULTS["batch_wait_timeout_s"])
            direct, through, alone = (statistics.median(samples[n]) for n in ("direct", "admitted", "unscheduled"))
            scheduler = replica.scheduler
            step_ms = direct / 8
            rows: dict[str, Any] = dict(step_ms=round(step_ms, 1), job_ms=round(direct),
                                        overhead_vs_model=round(through / direct, 3),
                                        overhead_vs_unscheduled=round(through / alone, 3))
            for level, step_level in (("request", False), ("step", True)):
                replica.scheduler = scheduler if step_level else None
                rows[level] = dict(head_of_line=head_of_line(Bench(replica, store, step_level), step_ms),
                                   fairness=fairness(Bench(replica, store, step_level), direct))
                replica.scheduler = scheduler
            queue = replica._generate  # the replica is not used after these runs
            for level, groups, joining in (("request", 1, 0), ("step_without_joining", queue.max_groups, 0),
                                           ("step", queue.max_groups, scheduler.batch_budget)):
                queue.max_groups, scheduler.batch_budget = groups, joining
                rows.setdefault("continuous_batching", {})[level] = staggered(Bench(replica, store, True), direct)
        finally:
            server.stop()
    print(json.dumps(rows, indent=2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2))


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
