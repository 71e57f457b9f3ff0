"""The step scheduler of a diffusion replica: its device runs one *turn* at a time, and at every step boundary the
scheduler decides which turn runs next.

A replica runs several groups at once (`group_slots`, admitted by `deployments/admission.py`), each compatible
group in its own thread holding a ticket. A turn is a set of tickets that step together: the best ticket and the
waiting ones of its lane and *fusion key* (same operation and latent shape, no adapters or controls: the model's
`fuse_key`), up to `batch_budget` requests. Their denoiser calls of a step meet here (`fused`) and run as one
forward, each job at its own timestep with its own scheduler state (`models/fusion.py`): continuous batching. A
ticket holds the device from its pipeline call's start to its first step boundary (text encoding, preparation,
step 1), then from boundary to boundary, and its last slot ends after the VAE decode. Once every member of the turn
reached its boundary:

- the best waiting ticket takes over if it beats the turn's best member: the highest lane first (a `high` job
  overtakes running `normal` and `low` ones at their next step), then the user granted the fewest slots (a step
  counts 1/weight of the user's tier, whatever it costs: weighted round-robin; a user who starts waiting begins at
  the least of the users already waiting or running, so nobody banks credit), then the earliest arrival. One of the
  turn's own lane takes over only once the turn has lasted `turn_s`: each hand-over costs the device time (on an
  H200, SDXL's two groups handed over at every step ran at 0.67× of one after the other, BENCHMARKS.md), so users
  take turns of `turn_s` rather than of a step;
- otherwise the turn goes on, joined by the waiting tickets of its lane and key that fit the budget (each starts at
  its own step 0, and leaves when done).

A paused ticket keeps its step state in its thread's memory and continues from the same step; nothing is recomputed.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from models.fusion import DenoiserCall, run_calls, synchronize

LANE_RANK = {"high": 0, "normal": 1, "low": 2}


@dataclass(eq=False)
class Ticket:
    """One pipeline call waiting for, or holding, the device: `size` requests whose denoiser calls may run with
    other tickets' of the same `key` (None: never)."""

    lane: str
    user: str
    arrived: int = 0
    key: Hashable | None = None
    size: int = 1
    weight: float = 1.0  # its user's tier weight: a step costs its user 1/weight of a slot
    fused_requests: int = 0  # the most requests (its own included) it ran with: its size, or one denoiser forward's
    device_s: float = 0.0  # device time it used: its own code while it held the device, its share of fused forwards
    since: float = 0.0  # when it last began running its own code


class StepScheduler:
    """Grants the device to one turn at a time (thread-safe; the turn's threads run, the others block)."""

    def __init__(self, turn_s: float = 0.0, batch_budget: int = 0) -> None:
        self.turn_s = turn_s
        self.batch_budget = batch_budget  # requests per fused denoiser call (0 or 1: a turn is one ticket)
        self._lock = threading.Condition()
        self._turn: list[Ticket] = []
        self._parked: set[Ticket] = set()  # members of the turn at a step boundary
        self._pending: dict[Ticket, DenoiserCall] = {}  # members' denoiser calls waiting to run together
        self._active: Ticket | None = None  # the member running its own code (one at a time: VAEs keep state)
        self._decisions = 0  # counts decisions at boundaries (parked members wait for the next)
        self._granted_at = 0.0  # when the turn began
        self._waiting: list[Ticket] = []
        self._served: dict[str, float] = {}  # slots per user with a live ticket, each 1/weight (virtual time)
        self._live: dict[str, int] = {}  # live tickets per user
        self._arrivals = itertools.count()

    def ticket(self, lane: str | None, user: str | None, key: Hashable | None = None, size: int = 1,
               weight: float = 1.0) -> Ticket:
        """A ticket that has run with its own `size` requests so far (a call whose img2img strength leaves no step
        runs no denoiser forward)."""
        return Ticket(lane if lane in LANE_RANK else "normal", user or "", next(self._arrivals), key, size, weight,
                      fused_requests=size)

    @contextmanager
    def running(self, ticket: Ticket) -> Iterator[None]:
        """Holds the device for `ticket`'s call (with its turn), from its first slot to its end."""
        with self._lock:
            if not self._live.get(ticket.user):
                self._served[ticket.user] = min((self._served[u] for u in self._live if self._live[u]), default=0)
            self._live[ticket.user] = self._live.get(ticket.user, 0) + 1
            self._waiting.append(ticket)
            if not self._turn:
                self._grant()
            self._wait_for_turn(ticket)
        try:
            yield
        finally:
            with self._lock:
                self._leave(ticket)
                self._turn.remove(ticket)
                self._parked.discard(ticket)
                self._live[ticket.user] -= 1
                if not self._live[ticket.user]:
                    del self._live[ticket.user], self._served[ticket.user]
                self._settle()

    def boundary(self, ticket: Ticket) -> None:
        """At `ticket`'s step boundary: once its whole turn is at one, the turn goes on (joined by waiting tickets of
        its key) or a better ticket's turn begins; then `ticket` waits for its own turn."""
        with self._lock:
            self._served[ticket.user] += 1.0 / ticket.weight
            self._leave(ticket)
            self._parked.add(ticket)
            decision = self._decisions
            self._settle()
            while self._decisions == decision:
                self._lock.wait()
            self._wait_for_turn(ticket)

    def fused(self, ticket: Ticket, call: DenoiserCall) -> Any:
        """`ticket`'s denoiser call, run with the calls its turn's other members make in the same step."""
        call.requests = ticket.size
        with self._lock:
            alone = len(self._turn) == 1  # nobody joins before this member's next boundary
            if not alone:
                self._leave(ticket)
                self._pending[ticket] = call
                self._settle()
                while ticket in self._pending:
                    self._lock.wait()
                self._enter(ticket)
        if alone:  # within its own code's time
            run_calls([call])
        else:
            ticket.device_s += call.device_s
        ticket.fused_requests = max(ticket.fused_requests, call.joint)
        if call.error is not None:
            raise call.error
        return call.result

    def waiting(self) -> int:
        """Calls waiting for the device (a scheduling metric)."""
        with self._lock:
            return len(self._waiting)

    def _wait_for_turn(self, ticket: Ticket) -> None:
        while ticket not in self._turn:
            self._lock.wait()
        self._enter(ticket)

    def _enter(self, ticket: Ticket) -> None:
        """Members of a turn run their own code (text encoding, scheduler step, VAE) one at a time."""
        while self._active is not None and self._active is not ticket:
            self._lock.wait()
        if self._active is not ticket:
            ticket.since = time.perf_counter()
        self._active = ticket

    def _leave(self, ticket: Ticket) -> None:
        if self._active is ticket:
            synchronize()
            ticket.device_s += time.perf_counter() - ticket.since
            self._active = None
            self._lock.notify_all()

    def _settle(self) -> None:
        """Runs the members' pending denoiser calls once every member waits in one or at a boundary; decides the
        next turn once all are at a boundary (or none is left). Called with the lock held."""
        if not self._turn:
            self._grant()
            return
        if not all(member in self._pending or member in self._parked for member in self._turn):
            return
        if self._pending:
            self._run_pending()
            return
        self._decide()

    def _run_pending(self) -> None:
        calls = dict(self._pending)
        self._lock.release()  # the forwards run unlocked: new tickets may queue meanwhile
        try:
            run_calls(list(calls.values()))
        finally:
            self._lock.acquire()
        for member in calls:
            del self._pending[member]
        self._lock.notify_all()

    def _decide(self) -> None:
        """Every member is at a step boundary: the turn goes on, joined by waiting tickets of its key, unless a
        better ticket waits."""
        self._decisions += 1
        self._parked.clear()
        best = min(self._waiting, key=self._rank, default=None)
        joiners = self._joiners(self._turn)
        if best is not None and best not in joiners and self._beats(best, min(self._turn, key=self._rank)):
            self._waiting += self._turn
            self._turn = []
            self._grant()
        else:
            self._admit(joiners)
        self._lock.notify_all()

    def _grant(self) -> None:
        """The best waiting ticket begins a turn with the waiting tickets of its key that fit the budget."""
        best = min(self._waiting, key=self._rank, default=None)
        if best is None:
            return
        self._waiting.remove(best)
        self._turn = [best]
        self._admit(self._joiners(self._turn))
        self._granted_at = time.monotonic()
        self._lock.notify_all()

    def _admit(self, joiners: list[Ticket]) -> None:
        for ticket in joiners:
            self._waiting.remove(ticket)
            self._turn.append(ticket)

    def _joiners(self, turn: list[Ticket]) -> list[Ticket]:
        """Waiting tickets that fit the turn: its fusion key and lane (a higher lane's job runs its steps alone, at
        full speed, and a paused lower lane's rejoins only its own lane's turn), best first, within the budget."""
        key, lane = turn[0].key, turn[0].lane
        if key is None or self.batch_budget <= 1:
            return []
        room, found = self.batch_budget - sum(member.size for member in turn), []
        for ticket in sorted(self._waiting, key=self._rank):
            if ticket.key == key and ticket.lane == lane and ticket.size <= room:
                found.append(ticket)
                room -= ticket.size
        return found

    def _rank(self, ticket: Ticket) -> tuple[int, float, int]:
        return LANE_RANK[ticket.lane], self._served.get(ticket.user, 0), ticket.arrived

    def _beats(self, challenger: Ticket, lead: Ticket) -> bool:
        """Whether `challenger` takes the device from the turn `lead` heads: a higher lane at once, the same lane
        with a better rank once the turn has lasted `turn_s`."""
        if challenger.lane == lead.lane and time.monotonic() - self._granted_at < self.turn_s:
            return False
        return self._rank(challenger) < self._rank(lead)
