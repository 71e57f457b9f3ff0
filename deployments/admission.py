"""Admission in a diffusion replica: where its jobs wait until their group starts, in place of Serve's FIFO batch queue.

A free group slot (the replica runs `max_groups` groups at once, interleaved step by step by its step scheduler) goes
to the best waiting job: the highest lane, then the user with the fewest jobs running (divided by the tier's
weight), then the earliest arrival;
the compatible jobs waiting behind it join its group (up to the batch size; a group that is not full waits up to the
batch timeout from its first job's arrival, as Serve's batching does). The last slot stays for a job whose user has
nothing running (or of a higher lane than every running group), so one user's backlog never keeps another user's job
from starting: it takes the device at the next step boundary past the running group's turn.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from deployments.scheduler import LANE_RANK


@dataclass(eq=False)
class Waiting:
    """One job in the admission queue, with the lane and user its task record names."""

    job: Any
    lane: str
    user: str
    weight: float
    future: asyncio.Future
    order: int
    arrived: float = field(default_factory=time.monotonic)


class Admission:
    """One operation's queue (`await admission(job, lane, user)` → its result); `run(jobs)` executes a group.
    Serve's batching knobs apply (`set_max_batch_size`, `set_batch_wait_timeout_s`, through the user_config)."""

    def __init__(self, run: Callable[[list[Any]], Awaitable[list]], key: Callable[[Any], Hashable], max_groups: int,
                 max_batch_size: int, batch_wait_timeout_s: float) -> None:
        self.run, self.key, self.max_groups = run, key, max_groups
        self.max_batch_size, self.batch_wait_timeout_s = max_batch_size, batch_wait_timeout_s
        self._waiting: list[Waiting] = []
        self._running: Counter[str] = Counter()  # running jobs per user
        self._lanes: list[int] = []  # the best lane rank of each running group
        self._orders = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()  # running groups (the loop keeps only weak references)

    async def __call__(self, job: Any, lane: str | None, user: str | None, weight: float = 1.0) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(Waiting(job, lane if lane in LANE_RANK else "normal", user or "", weight, future,
                                     next(self._orders)))
        self._admit()
        return await future

    def set_max_batch_size(self, size: int) -> None:
        self.max_batch_size = size

    def set_batch_wait_timeout_s(self, timeout_s: float) -> None:
        self.batch_wait_timeout_s = timeout_s

    def _get_max_batch_size(self) -> int:
        return self.max_batch_size

    def _get_batch_wait_timeout_s(self) -> float:
        return self.batch_wait_timeout_s

    def _rank(self, entry: Waiting) -> tuple[int, float, int]:
        return LANE_RANK[entry.lane], self._running[entry.user] / entry.weight, entry.order

    def _may_start(self, entry: Waiting) -> bool:
        free = self.max_groups - len(self._lanes)
        if free > 1:
            return True
        return free == 1 and (not self._running[entry.user] or LANE_RANK[entry.lane] < min(self._lanes))

    def _admit(self) -> None:
        """Starts every group the free slots allow (called on each arrival, each group's end and each timeout)."""
        self._waiting = [entry for entry in self._waiting if not entry.future.done()]  # callers that gave up
        while self._waiting:
            best = min(self._waiting, key=self._rank)
            if not self._may_start(best):
                return
            key = self.key(best.job.request)
            group = sorted((e for e in self._waiting if self.key(e.job.request) == key), key=self._rank)
            group = [best] + [e for e in group if e is not best][:self.max_batch_size - 1]
            wait_s = best.arrived + self.batch_wait_timeout_s - time.monotonic()
            if len(group) < self.max_batch_size and wait_s > 0:
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(wait_s, self._on_timer)
                return
            for entry in group:
                self._waiting.remove(entry)
                self._running[entry.user] += 1
            self._lanes.append(min(LANE_RANK[entry.lane] for entry in group))
            task = asyncio.ensure_future(self._start(group, self._lanes[-1]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_timer(self) -> None:
        self._timer = None
        self._admit()

    async def _start(self, group: list[Waiting], lane: int) -> None:
        try:
            results, settle = await self.run([entry.job for entry in group]), "set_result"
        except Exception as error:  # the group's callers get the failure; the queue goes on
            results, settle = [error] * len(group), "set_exception"
        finally:
            self._lanes.remove(lane)
            for entry in group:
                self._running[entry.user] -= 1
        for entry, result in zip(group, results, strict=True):
            if not entry.future.done():
                getattr(entry.future, settle)(result)
        self._admit()
