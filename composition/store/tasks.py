"""Tasks: Redis Streams per priority lane, the task indexes, idempotency and single-flight, waiting and events; the
task hash itself is the record module's (`records.tasks`)."""
from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

from config import keys
from config.composition import LANES, Lane
from records.webhooks import delivery_keys
from records.task_record import STATUSES, Status, TaskRecord
from records.tasks import CREATE, FINISH, LIVE_UPDATE, RESTORE, START, WAIT_FOR, WAIT_ON, Span, live_update

WAITING_REFRESH_S = 2.0  # SSE: how often a waiting task's queue position and ETA are sent
RENDER_REFRESH_S = 0.5  # and a task's waiting for another's render: that task's progress

class Earlier(BaseModel):
    """A task found by its Idempotency-Key, and the fingerprint of the request it was created for."""

    id: str
    fingerprint: str | None


class Entry(BaseModel):
    """One stream entry handed to a runner."""

    lane: Lane
    entry_id: str
    task_id: str


class TaskStore:
    """Creates, transitions, queues and lists tasks. Every transition is one atomic script."""

    def __init__(self, client: aioredis.Redis, task_ttl_s: int = 7 * 86_400, idempotency_ttl_s: int = 86_400):
        self.client = client
        self.task_ttl_s = task_ttl_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self._create = client.register_script(CREATE)
        self._start = client.register_script(START)
        self._finish = client.register_script(FINISH)
        self._live_update = client.register_script(LIVE_UPDATE)
        self._wait_for = client.register_script(WAIT_FOR)
        self._wait_on = client.register_script(WAIT_ON)
        self._restore = client.register_script(RESTORE)
        self._reads = 0

    async def create(self, kind: str, request: dict[str, Any], user_id: str = "", lane: Lane = "normal",
                     project_id: str | None = None, idempotency_key: str | None = None,
                     flight: str | None = None, fingerprint: str | None = None,
                     weight: float = 1.0, tier: str = "") -> tuple[str, bool]:
        """Queues a new task in `lane`, its user's `tier` (the GPU-seconds counter's label) and the tier's `weight`
        (for the replicas' step scheduling) recorded; (task id, created). The same Idempotency-Key for the same kind of
        task returns the first task, and the same `flight` digest returns the task already working on it
        (single-flight); `fingerprint` is what the key is bound to (see `idempotent`)."""
        task_id = uuid.uuid4().hex
        idem = keys.idempotency(user_id or "-", kind, idempotency_key) if idempotency_key else ""
        found, created = await self._create(
            keys=[keys.task(task_id), keys.task_stream(lane), keys.task_index(), keys.task_index(user_id or "-"),
                  keys.task_stats(), idem, keys.project_tasks(project_id) if project_id else "",
                  keys.flight(flight) if flight else ""],
            args=[task_id, kind, json.dumps(request), user_id, lane, time.time(), project_id or "",
                  self.idempotency_ttl_s, self.task_ttl_s, keys.task(""), fingerprint or "", weight, tier])
        return found.decode(), bool(created)

    async def restore(self, record: TaskRecord) -> str:
        """Stores a finished task from a project archive (its user and project already the importer's) under its own
        id when no task here has it, else under a new one; the id it got."""
        for task_id in (record.id, uuid.uuid4().hex):  # a fresh uuid4 is free
            fields = record.model_copy(update={"id": task_id}).to_hash()
            if await self._restore(keys=[keys.task(task_id), keys.task_index(), keys.task_index(record.user_id or "-"),
                                         keys.project_tasks(record.project_id or "-")],
                                   args=[task_id, record.created_at, self.task_ttl_s,
                                         *(part for pair in fields.items() for part in pair)]):
                break
        return task_id

    async def idempotent(self, user_id: str, kind: str, idempotency_key: str) -> Earlier | None:
        """The task an Idempotency-Key already names for this user and kind of task, with its fingerprint."""
        task_id = await self.client.get(keys.idempotency(user_id or "-", kind, idempotency_key))
        if task_id is None:
            return None
        found = await self.client.hget(keys.task(task_id.decode()), "fingerprint")
        return Earlier(id=task_id.decode(), fingerprint=found.decode() if found else None)

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task; while it waits for a model, with its place in that model's queue and an estimate of when its
        model work ends: the estimated model time of the tasks ahead and its own (each from the family's measured
        cost at that task's size; the mean request where a task has none). While it waits for another task's render
        (`rendered_by`), with that task's progress, steps, model wait and ETA."""
        record = await self._with_queue(task_id)
        if record is None or record.rendered_by is None or record.terminal:
            return record
        holder = await self._with_queue(record.rendered_by)  # ended, until this task moves on: where it ended
        if holder is None:
            return record
        mirrored = {"progress", "step", "steps", "waiting_for", "queue_position", "eta_s"}
        return record.model_copy(update=holder.model_dump(include=mirrored))

    async def _with_queue(self, task_id: str) -> TaskRecord | None:
        """The task as stored, with its queue place and ETA while it waits for a model."""
        raw = await self.client.hgetall(keys.task(task_id))
        record = TaskRecord.from_hash(raw) if raw else None
        if record is None or record.waiting_for is None or record.terminal:
            return record
        waiting = keys.waiting(record.waiting_for)
        pipe = self.client.pipeline(transaction=False)
        pipe.zrank(waiting, task_id)
        pipe.hget(keys.timing(record.waiting_for), "ms_per_job")
        ahead, ms_per_job = await pipe.execute()
        if ahead is None:
            return record
        queue = await self.client.zrange(waiting, 0, ahead)
        pipe = self.client.pipeline(transaction=False)
        for other in queue:
            pipe.hget(keys.task(other.decode()), "estimate_ms")
        estimates = [found or ms_per_job for found in await pipe.execute()]
        record.queue_position = int(ahead)
        record.eta_s = round(sum(map(float, estimates)) / 1000.0, 1) if all(estimates) else None
        return record

    async def start(self, task_id: str, max_attempts: int) -> int:
        """Marks a task running; the attempt number, 0 when it is already finished, -1 when retries are spent."""
        return int(await self._start(keys=[keys.task(task_id), keys.task_stats()], args=[time.time(), max_attempts]))

    async def succeed(self, task_id: str, result: dict[str, Any]) -> bool:
        return await self._transition(task_id, "succeeded", "result", result, ("running",))

    async def fail(self, task_id: str, code: str, message: str, field: str | None = None, status: int = 500) -> bool:
        """Terminal failure; `status` is the HTTP status a waiting client gets."""
        error = {"code": code, "message": message, "field": field, "status": status}
        return await self._transition(task_id, "failed", "error", error, ("queued", "running"))

    async def cancel(self, task_id: str) -> bool:
        return await self._transition(task_id, "cancelled", "", None, ("queued", "running"))

    async def _transition(self, task_id: str, status: Status, field: str, value: Any, allowed: tuple[str, ...]) -> bool:
        done = await self._finish(
            keys=[keys.task(task_id), keys.task_stats(), keys.task_events(task_id), keys.task_checkpoints(task_id),
                  *delivery_keys(task_id), keys.task_parts(task_id)],
            args=[status, field, json.dumps(value) if field else "", time.time(), self.task_ttl_s, ",".join(allowed),
                  keys.waiting(""), keys.webhook("")])
        return bool(done)

    async def add_gpu_seconds(self, task_id: str, seconds: float) -> None:
        """Adds device seconds to the task's `gpu_seconds`."""
        await self.client.hincrbyfloat(keys.task(task_id), "gpu_seconds", seconds)

    async def set_stage(self, task_id: str, stage: str, progress: float = 0.0, span: Span | None = None) -> None:
        """Stage and progress of a live task (a cancelled or finished one keeps its own), with its event; a task of
        several parts gives its stage's `span`, and its progress is the whole task's (`LIVE_UPDATE`)."""
        await self._live_update(*live_update(task_id, progress, stage, span=span))

    async def wait_for(self, task_id: str, family: str, estimate_ms: float | None) -> None:
        """The task now waits for `family`'s replicas (stage "waiting"; a task of several parts keeps its stage and
        progress) until one starts its model work, which is estimated to take `estimate_ms` (None before the family
        was measured)."""
        await self._wait_for(keys=[keys.task(task_id), keys.task_events(task_id), keys.waiting(family)],
                             args=[family, time.time(), task_id, "" if estimate_ms is None else estimate_ms])

    async def wait_on(self, task_id: str, holder: str) -> None:
        """The task now waits for `holder`'s render of what it needs (stage "waiting"), until its own stage moves on."""
        await self._wait_on(keys=[keys.task(task_id), keys.task_events(task_id)], args=[holder, time.time(), task_id])

    async def status(self, task_id: str) -> str | None:
        """The task's status alone (None for an unknown or expired task)."""
        found = await self.client.hget(keys.task(task_id), "status")
        return found.decode() if found else None

    async def is_cancelled(self, task_id: str) -> bool:
        return await self.status(task_id) == "cancelled"

    async def list(self, user_id: str | None = None, status: str | None = None, kind: str | None = None,
                   limit: int = 50) -> list[TaskRecord]:
        """Newest first: the index is read a page at a time until `limit` tasks match the filters or it ends."""
        page = max(limit * 4, 200)
        matching: list[TaskRecord] = []
        for start in itertools.count(0, page):
            ids = await self.client.zrevrange(keys.task_index(user_id), start, start + page - 1)
            pipe = self.client.pipeline(transaction=False)
            for task_id in ids:
                pipe.hgetall(keys.task(task_id.decode()))
            records = [TaskRecord.from_hash(raw) for raw in await pipe.execute() if raw]
            matching += [r for r in records
                         if (status is None or r.status == status) and (kind is None or r.kind == kind)]
            if len(matching) >= limit or len(ids) < page:
                return matching[:limit]

    async def delete(self, task_id: str) -> None:
        """Marks the task deleted (OpenAI's videos.delete): the Videos API no longer shows it or its content."""
        await self.client.set(keys.task_deleted(task_id), 1, ex=self.task_ttl_s)

    async def deleted(self, task_ids: list[str]) -> list[bool]:
        """Which of these tasks are marked deleted, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.exists(keys.task_deleted(task_id))
        return [bool(found) for found in await pipe.execute()]

    async def listed_for(self, task_id: str, user_id: str) -> bool:
        """Whether the task is in the user's index: created by them, or joined through single-flight."""
        return await self.client.zscore(keys.task_index(user_id), task_id) is not None

    async def counts(self) -> dict[str, int]:
        """Tasks by status (one read of the counters the transition scripts keep)."""
        counts = await self.client.hgetall(keys.task_stats())
        return {status: 0 for status in STATUSES} | {k.decode(): int(v) for k, v in counts.items()}

    async def stats(self) -> dict[str, Any]:
        by_status = await self.counts()
        lanes = {}
        for lane in LANES:
            stream = keys.task_stream(lane)
            pending = await self.client.xpending(stream, keys.RUNNER_GROUP) if await self.client.exists(stream) else None
            lanes[lane] = {"length": await self.client.xlen(stream), "pending": pending["pending"] if pending else 0}
        return {"by_status": by_status, "lanes": lanes}

    # Streams: the runners' side.

    async def ensure_groups(self) -> None:
        for lane in LANES:
            try:
                await self.client.xgroup_create(keys.task_stream(lane), keys.RUNNER_GROUP, id="0", mkstream=True)
            except aioredis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """New entries, higher lanes first; every fourth read starts at the low lane so it never starves."""
        self._reads += 1
        order = LANES[::-1] if self._reads % 4 == 0 else LANES
        entries: list[Entry] = []
        for lane in order:
            if len(entries) >= count:
                break
            replies = await self.client.xreadgroup(keys.RUNNER_GROUP, consumer, {keys.task_stream(lane): ">"},
                                                   count=count - len(entries))
            entries += _entries(lane, replies)
        if not entries:  # nothing anywhere: block on all lanes at once
            streams = {keys.task_stream(lane): ">" for lane in LANES}
            replies = await self.client.xreadgroup(keys.RUNNER_GROUP, consumer, streams, count=count, block=block_ms)
            for stream, messages in replies or []:
                entries += _entries(stream.decode().rsplit(":", 1)[1], [(stream, messages)])
        return entries

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Entries idle longer than `min_idle_ms` (their runner died) move to `consumer`."""
        entries: list[Entry] = []
        for lane in LANES:
            reply = await self.client.xautoclaim(keys.task_stream(lane), keys.RUNNER_GROUP, consumer, min_idle_ms,
                                                 count=count)
            entries += _entries(lane, [(None, reply[1])])
        return entries

    async def heartbeat(self, consumer: str, entries: list[Entry]) -> None:
        """Resets the idle time of entries this runner still works on."""
        for entry in entries:
            await self.client.xclaim(keys.task_stream(entry.lane), keys.RUNNER_GROUP, consumer, 0,
                                     [entry.entry_id], justid=True)

    async def ack(self, entry: Entry) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(keys.task_stream(entry.lane), keys.RUNNER_GROUP, entry.entry_id)
        pipe.xdel(keys.task_stream(entry.lane), entry.entry_id)
        await pipe.execute()

    # Waiting: the ingress side.

    async def wait(self, task_id: str, timeout_s: float) -> TaskRecord | None:
        """The task once terminal, or as it stands after `timeout_s`."""
        if timeout_s <= 0:
            return await self.get(task_id)
        async with self.client.pubsub() as pubsub:
            await pubsub.subscribe(keys.task_events(task_id))
            deadline = time.monotonic() + timeout_s
            record = await self.get(task_id)
            while record and not record.terminal and (left := deadline - time.monotonic()) > 0:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))
                if message is None or b'"status"' in message["data"]:
                    record = await self.get(task_id)
            return record

    async def events(self, task_id: str, heartbeat_s: float = 15.0):
        """Yields the task's state, then every update, ending with the terminal record."""
        async with self.client.pubsub() as pubsub:
            await pubsub.subscribe(keys.task_events(task_id))
            record = await self.get(task_id)
            if record is None:
                return
            yield _event(record)
            while not record.terminal:
                wait_s = (RENDER_REFRESH_S if record.rendered_by else WAITING_REFRESH_S if record.waiting_for
                          else heartbeat_s)
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait_s)
                if message is None:
                    record = await self.get(task_id) or record
                    yield _event(record)
                    continue
                update = json.loads(message["data"])
                if "status" in update or "waiting_for" in update or "rendered_by" in update:
                    record = await self.get(task_id) or record
                    yield _event(record)
                else:
                    record.waiting_for = record.rendered_by = None  # a stage or step update: its own work has begun
                    yield {"id": task_id, "status": record.status, **update}


def _event(record: TaskRecord) -> dict[str, Any]:
    return record.model_dump(exclude={"request", "user_id", "lane", "weight", "attempts", "preview"})


def _entries(lane: str, replies) -> list[Entry]:
    return [Entry(lane=lane, entry_id=entry_id.decode(), task_id=fields[b"task"].decode())
            for _, messages in replies or [] for entry_id, fields in messages if fields]
