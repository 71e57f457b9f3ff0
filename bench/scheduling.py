"""The step scheduler against request-level serving, side by side in one run: `python -m bench.scheduling`.

The SDXL deployment class in-process (tiny weights at 256², this CPU: a step of tens of milliseconds, well above the
bench's 20 ms polling) on an embedded Redis. "Request level" is what a
replica did before the scheduler: one call at a time (a lock around each, as `max_concurrent_batches=1`); "step
level" submits through the replica's own admission (`deployments/admission.py`: `CONCURRENT_BATCHES` group slots,
batches of up to 4, one slot kept for a user with nothing running) and its step scheduler. Nothing is asserted;
figures go to stdout and var/bench/scheduling.json (`--notes FILE` appends the raw samples as JSON lines).

Every scenario runs in each of `--rounds` rounds (5 by default), its modes one after the other and in reverse order
every other round (ABAB...), so a drift of this machine's speed reaches every mode alike. Each figure is reported as
the median of its rounds with their spread (min, max); a goal is "met" only when the worst round clears it.

1. Head-of-line: a high-lane 4-step image arrives while a low-lane 100-step job (the API's most) runs (at its step
   10): its latency against its solo latency (the same image alone through the same path, just before), in step
   times.
2. Fairness: user A submits 20 jobs of 8 steps, then user B submits 1: B's wait (to its first step) and its latency,
   in job times.
3. Overhead: a lone 8-step job through the replica's admission and scheduler, against the model called directly and
   against the replica without either (Redis progress and cancellation checks in both).
4. Continuous batching: 16 clients arrive a quarter of a job time apart, each asking for one image of 6 to 12
   steps (different step counts never share a request-level batch): images/s and mean latency of request-level
   batching (one group at a time, run to its end), the step scheduler without joining (`step_batch` 0), and with it.
The step scheduler's figures are taken with joining on (`step_batch` 8); the high-lane image of (1) pauses the
low-lane job rather than joining it (a turn holds one lane).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
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
SIDE = 256


def _request(steps: int, seed: int) -> ImageRequest:
    return ImageRequest(prompt="a red kite", width=SIDE, height=SIDE, steps=steps, guidance=5.0, seed=seed)


class Bench:
    def __init__(self, replica: SDXLDeployment, store: redis.Redis, step_level: bool) -> None:
        self.replica, self.store, self.step_level = replica, store, step_level
        self.gate = asyncio.Lock()

    async def job(self, task_id: str, request: ImageRequest, lane: str, user: str) -> tuple[float, float, float]:
        """(submitted, first step, ended) times of one job."""
        task_id = f"bench-{task_id}-{self.step_level}"
        self.store.delete(keys.task(task_id))  # a new record each round: no progress left from the last one
        self.store.hset(keys.task(task_id), mapping={"id": task_id, "status": "running", "lane": lane,
                                                     "user_id": user})
        submitted = time.perf_counter()
        if self.step_level:  # the replica's own admission and batching, as Serve calls it
            run = asyncio.ensure_future(self.replica.generate(request, task_id))
            started = await self._first_step(task_id, run)
            await run
        else:
            async with self.gate:
                run = asyncio.ensure_future(self.replica.execute([Job(request, task_id)], "generate",
                                                                 "denoising"))
                started = await self._first_step(task_id, run)
                await run
        return submitted, started, time.perf_counter()

    async def _first_step(self, task_id: str, run: asyncio.Future) -> float:
        while not run.done() and float(self.store.hget(keys.task(task_id), "progress") or 0) == 0:
            await asyncio.sleep(0.02)  # coarse: polling must not take a core from the model
        return time.perf_counter()


def head_of_line(bench: Bench, step_ms: float) -> dict[str, float]:
    """The high image's latency behind the low job, over the same image alone through the same path (run just
    before, so both see the same machine)."""
    low_record = keys.task(f"bench-low-{bench.step_level}")

    async def scenario():
        bench.store.delete(low_record)  # not an earlier round's finished job: wait for this one's step 10
        low = asyncio.ensure_future(bench.job("low", _request(100, 1), "low", "ann"))
        while float(bench.store.hget(low_record, "progress") or 0) < 0.1:
            await asyncio.sleep(0.02)
        high = await bench.job("high", _request(4, 2), "high", "bob")
        await low
        return high

    solo_ms = _span(asyncio.run(bench.job("solo", _request(4, 2), "high", "bob")))
    latency = _span(asyncio.run(scenario()))
    return dict(latency_ms=round(latency), solo_ms=round(solo_ms), extra_steps=round((latency - solo_ms) / step_ms, 2))


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


# What each scenario reports, its goal (figure ≤ goal; None: no goal) and the modes compared in it.
FIGURES = {"overhead": ("vs_unscheduled", 1.05), "head_of_line": ("extra_steps", 2.0),
           "fairness": ("wait_jobs", 2.0), "continuous_batching": ("images_per_s", None)}


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario and mode: the median of its rounds and their spread (min, max), and for the step scheduler's
    figure against its goal, "met" only when the worst round clears it."""
    rows: dict[str, Any] = {}
    for scenario, (figure, goal) in FIGURES.items():
        for mode in dict.fromkeys(s["mode"] for s in samples if s["scenario"] == scenario):
            values = [s[figure] for s in samples if s["scenario"] == scenario and s["mode"] == mode]
            row = dict(figure=figure, median=round(statistics.median(values), 3), min=min(values), max=max(values),
                       rounds=len(values))
            if goal is not None and mode in ("step", "admitted"):
                row |= dict(goal=goal, met=max(values) <= goal)
            rows.setdefault(scenario, {})[mode] = row
    return rows


class Modes:
    """The replica's serving modes, set on one replica in turn: request level (one call at a time), the step
    scheduler without joining (`step_batch` 0) and with it."""

    def __init__(self, replica: SDXLDeployment, store: redis.Redis) -> None:
        self.replica, self.store = replica, store
        self.scheduler, self.queue = replica.scheduler, replica._generate
        self.groups, self.budget = self.queue.max_groups, self.scheduler.batch_budget

    def bench(self, mode: str) -> Bench:
        request_level = mode == "request"
        self.replica.scheduler = None if request_level else self.scheduler
        self.queue.max_groups = 1 if mode == "request_batches" else self.groups
        self.scheduler.batch_budget = 0 if mode in ("request_batches", "step_without_joining") else self.budget
        return Bench(self.replica, self.store, step_level=not request_level)


def one_round(replica: SDXLDeployment, store: redis.Redis, order: int) -> list[dict[str, Any]]:
    """Every scenario once, its modes in `order` (1 or -1: alternate rounds reverse it, so neither mode always runs
    first): the round's samples."""
    model, modes = replica.model, Modes(replica, store)
    samples: list[dict[str, Any]] = []

    def unscheduled() -> None:  # the replica without admission and scheduler
        saved, replica.scheduler = replica.scheduler, None
        try:
            asyncio.run(replica.execute([Job(_request(8, 0), "lone")], "generate", "d"))
        finally:
            replica.scheduler = saved

    def admitted() -> None:  # admission, then the scheduler (no batch wait: the job is alone)
        asyncio.run(replica.generate(_request(8, 0), "lone"))

    replica._generate.set_batch_wait_timeout_s(0.0)
    lone = {"direct": lambda: model.generate([_request(8, 0)]), "admitted": admitted, "unscheduled": unscheduled}
    times = {name: _timed(lone[name]) for name in list(lone)[::order]}
    replica._generate.set_batch_wait_timeout_s(BATCH_DEFAULTS["batch_wait_timeout_s"])
    job_ms = times["direct"]
    samples.append(dict(scenario="overhead", mode="admitted", job_ms=round(job_ms), step_ms=round(job_ms / 8, 1),
                        vs_model=round(times["admitted"] / job_ms, 3),
                        vs_unscheduled=round(times["admitted"] / times["unscheduled"], 3)))
    for mode in ("request", "step")[::order]:
        samples.append(dict(scenario="head_of_line", mode=mode) | head_of_line(modes.bench(mode), job_ms / 8))
    for mode in ("request", "step")[::order]:
        samples.append(dict(scenario="fairness", mode=mode) | fairness(modes.bench(mode), job_ms))
    for mode in ("request_batches", "step_without_joining", "step")[::order]:
        samples.append(dict(scenario="continuous_batching", mode=mode) | staggered(modes.bench(mode), job_ms))
    modes.bench("step")
    return samples


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every scenario and mode (ABAB...)")
    parser.add_argument("--notes", type=Path, help="also append the raw samples to this JSON-lines file")
    args = parser.parse_args(argv)
    samples: list[dict[str, Any]] = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as data_dir:
        server = EmbeddedRedis(Path(data_dir), appendonly=False).start()
        try:
            store = redis.Redis.from_url(server.url)
            replica = SDXLDeployment(SDXLArgs(), server.url)
            replica.policy = StepPolicy(preview_every=0)
            replica.model.generate([_request(8, 0)])  # warm-up
            store.hset(keys.task("lone"), mapping={"id": "lone", "status": "running", "lane": "normal"})
            for index in range(args.rounds):
                for sample in one_round(replica, store, 1 if index % 2 == 0 else -1):
                    samples.append(dict(round=index) | sample)
                    print(json.dumps(samples[-1]), flush=True)
        finally:
            server.stop()
    result = dict(date=time.strftime("%Y-%m-%d"), cores=os.cpu_count(), load_average_1m=load, rounds=args.rounds,
                  summary=summary(samples))
    print(json.dumps(result, indent=2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result | dict(samples=samples), indent=2))
    if args.notes:
        with args.notes.open("a") as notes:
            for sample in samples:
                notes.write(json.dumps(dict(date=result["date"], device="cpu", cores=result["cores"]) | sample) + "\n")
    return result


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
