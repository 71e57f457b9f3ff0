"""Step checkpoints of a task's denoising jobs, in Redis next to the task record: one hash per task, a field per
job (the digest of its model request: a storyboard's scenes are several jobs of one task). Written by the model
replicas while the task is live, read by whichever replica runs a retry, deleted with the task's end (`FINISH`).

Redis is the one place: every node reaches it, AOF makes it durable, and a state is megabytes at most (BENCHMARKS.md
lists the sizes per family)."""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, NamedTuple

import redis

from config import keys
from records.task_record import tier_weight

log = logging.getLogger("montage.checkpoints")


def job_digest(request: Any) -> str:
    """Names one model request of a task (a storyboard's scenes are several): its checkpoint's field."""
    fields = json.dumps(request.model_dump(), sort_keys=True, default=lambda data: hashlib.sha256(data).hexdigest())
    return hashlib.sha256(fields.encode()).hexdigest()[:32]

SAVE = """
-- KEYS: task, checkpoints, events; ARGV: job digest, state, ttl, event JSON. Only a live task keeps a checkpoint,
-- so a job still running after its task was cancelled leaves nothing behind.
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[3], ARGV[4])
return 1
"""


KEEP = """
-- KEYS: task, kept; ARGV: field, state, ttl. A live task's step state kept for forks after the task ends.
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

START = """
-- KEYS: task, checkpoints; ARGV: job digest, state, ttl. A live task's job starts from a given step state unless
-- it checkpointed already (a retry resumes from its own newer state).
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
local written = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return written
"""


class QueuedJob(NamedTuple):
    """A queued job's task record (lane, user, tier weight) and newest checkpoint (None: none written)."""

    lane: str | None
    user: str | None
    weight: float
    state: bytes | None


class Checkpoints:
    """A replica's reads and writes of step checkpoints (best effort: Redis may be restarting)."""

    def __init__(self, client: redis.Redis | None) -> None:
        self.client = client
        self._save = client.register_script(SAVE) if client else None
        self._keep = client.register_script(KEEP) if client else None

    def load(self, jobs: list[tuple[str | None, str]]) -> list[QueuedJob]:
        """What the records say of each (task id, job digest), in one round trip."""
        nothing = QueuedJob(None, None, 1.0, None)
        known = [(task_id, digest) for task_id, digest in jobs if task_id is not None]
        if self.client is None or not known:
            return [nothing] * len(jobs)
        pipe = self.client.pipeline(transaction=False)
        for task_id, digest in known:
            pipe.hmget(keys.task(task_id), "lane", "user_id", "weight")
            pipe.hget(keys.task_checkpoints(task_id), digest)
        try:
            replies = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            return [nothing] * len(jobs)
        found = {job: QueuedJob(lane.decode() if lane else None, user.decode() if user else None, tier_weight(weight),
                                state)
                 for job, (lane, user, weight), state in zip(known, replies[::2], replies[1::2], strict=True)}
        return [found.get(job, nothing) for job in jobs]

    def save(self, task_id: str | None, digest: str, state: bytes, step: int, ttl_s: int) -> bool:
        """Keeps `state` (after `step`) as the job's newest checkpoint while its task is live; publishes a
        `checkpoint` event. False when the task has ended or Redis is unreachable."""
        if self._save is None or task_id is None:
            return False
        event = json.dumps({"id": task_id, "event": "checkpoint", "step": step, "bytes": len(state)})
        try:
            return bool(self._save(keys=[keys.task(task_id), keys.task_checkpoints(task_id), keys.task_events(task_id)],
                                   args=[digest, state, ttl_s, event]))
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("checkpoint of task %s at step %d not written: Redis unreachable", task_id, step)
            return False

    def keep(self, task_id: str | None, seed: int, step: int, state: bytes, ttl_s: int) -> bool:
        """Keeps a live task's job state after `step` for forks, for `ttl_s`; False when not written."""
        if self._keep is None or task_id is None:
            return False
        try:
            return bool(self._keep(keys=[keys.task(task_id), keys.task_kept(task_id)],
                                   args=[keys.kept_field(seed, step), state, ttl_s]))
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("kept state of task %s at step %d not written: Redis unreachable", task_id, step)
            return False
