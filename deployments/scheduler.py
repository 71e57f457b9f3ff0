"""The step scheduler of a diffusion replica: its device runs one pipeline call's step at a time, and at every step
boundary the scheduler decides which call runs next.

A replica runs several groups at once (`CONCURRENT_BATCHES`, admitted by `deployments/admission.py`), each compatible
group in its own thread. A group
holds the device from its pipeline call's start to its first step boundary (text encoding, preparation, step 1),
then from boundary to boundary, and its last slot ends after the VAE decode. At a boundary the next slot goes to the
best waiting group: the highest lane first (a `high` job overtakes running `normal` and `low` ones at their next
step), then the user granted the fewest slots (a step each, whatever it costs; a user who starts waiting begins at
the least of the users already waiting or running, so nobody banks credit), then the earliest arrival. A group of
the holder's own lane takes over only once the holder's turn has lasted `turn_s`: each hand-over costs the device
time (on an H200, SDXL's two groups handed over at every step ran at 0.67× of one after the other, BENCHMARKS.md),
so users take turns of `turn_s` rather than of a step; a higher lane takes over at the next step all the same.
A paused group keeps its step state in its thread's memory and continues from the same step; nothing is recomputed.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

LANE_RANK = {"high": 0, "normal": 1, "low": 2}


@dataclass(eq=False)
class Ticket:
    """One pipeline call waiting for, or holding, the device."""

    lane: str
    user: str
    arrived: int = field(default=0)


class StepScheduler:
    """Grants the device to one ticket at a time (thread-safe; the holder's thread runs, the others block)."""

    def __init__(self, turn_s: float = 0.0) -> None:
        self.turn_s = turn_s
        self._lock = threading.Condition()
        self._holder: Ticket | None = None
        self._granted_at = 0.0  # when the holder's turn began
        self._waiting: list[Ticket] = []
        self._served: dict[str, int] = {}  # slots per user with a live ticket (virtual time)
        self._live: dict[str, int] = {}  # live tickets per user
        self._arrivals = itertools.count()

    def ticket(self, lane: str | None, user: str | None) -> Ticket:
        return Ticket(lane if lane in LANE_RANK else "normal", user or "", next(self._arrivals))

    @contextmanager
    def running(self, ticket: Ticket) -> Iterator[None]:
        """Holds the device for `ticket`'s call, from its first slot to its end."""
        with self._lock:
            if not self._live.get(ticket.user):
                self._served[ticket.user] = min((self._served[u] for u in self._live if self._live[u]), default=0)
            self._live[ticket.user] = self._live.get(ticket.user, 0) + 1
            self._acquire(ticket)
        try:
            yield
        finally:
            with self._lock:
                self._holder = None
                self._live[ticket.user] -= 1
                if not self._live[ticket.user]:
                    del self._live[ticket.user], self._served[ticket.user]
                self._lock.notify_all()

    def boundary(self, ticket: Ticket) -> None:
        """At `ticket`'s step boundary: it keeps the device unless a better ticket waits; then it waits its turn."""
        with self._lock:
            self._served[ticket.user] += 1
            best = self._best(self._waiting)
            if best is None or not self._beats(best, ticket):
                return
            if best.lane == ticket.lane and time.monotonic() - self._granted_at < self.turn_s:
                return  # the holder's turn goes on
            self._holder = None
            self._lock.notify_all()
            self._acquire(ticket)

    def waiting(self) -> int:
        """Calls waiting for the device (a scheduling metric)."""
        with self._lock:
            return len(self._waiting)

    def _acquire(self, ticket: Ticket) -> None:
        self._waiting.append(ticket)
        while self._holder is not None or self._best(self._waiting) is not ticket:
            self._lock.wait()
        self._waiting.remove(ticket)
        self._holder = ticket
        self._granted_at = time.monotonic()

    def _rank(self, ticket: Ticket) -> tuple[int, int, int]:
        return LANE_RANK[ticket.lane], self._served.get(ticket.user, 0), ticket.arrived

    def _best(self, tickets: list[Ticket]) -> Ticket | None:
        return min(tickets, key=self._rank, default=None)

    def _beats(self, challenger: Ticket, holder: Ticket) -> bool:
        return self._rank(challenger) < self._rank(holder)
