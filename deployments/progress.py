"""Per-step progress from a replica into the task's Redis record (and its event channel)."""
from __future__ import annotations

import json
import time
from typing import Any

import redis
from redis.retry import Retry

from config import keys
from config.settings import store_backoff


def end_wait(prefix: str) -> str:
    """Lua: the task (KEYS[1]) no longer waits for a model's replicas; `prefix` is the Lua expression holding the
    waiting-set key prefix."""
    return f"""
local waited = redis.call('HGET', KEYS[1], 'waiting_for')
if waited then
  redis.call('ZREM', {prefix} .. waited, redis.call('HGET', KEYS[1], 'id'))
  redis.call('HDEL', KEYS[1], 'waiting_for')
end
"""


LIVE_UPDATE = """
-- KEYS: task, events channel; ARGV: progress, stage, now, event JSON, waiting-set key prefix. Only a queued or
-- running task changes, so a late step never moves a cancelled or finished task's stage back; a task that was
-- waiting for a model's replicas is not any more. Returns the status.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'stage', ARGV[2], 'updated_at', ARGV[3])
""" + end_wait("ARGV[5]") + """
  redis.call('PUBLISH', KEYS[2], ARGV[4])
end
return status
"""


def live_update(task_id: str, progress: float, stage: str) -> tuple[list[str], list[Any]]:
    """(keys, args) of `LIVE_UPDATE` for one task."""
    update = {"progress": round(progress, 4), "stage": stage, "updated_at": time.time()}
    return ([keys.task(task_id), keys.task_events(task_id)],
            [*update.values(), json.dumps({"id": task_id, **update}), keys.waiting("")])


class Cancelled(Exception):
    """Every task of a running group was cancelled: the pipeline stops at this step."""


class ProgressReporter:
    """Writes `progress` (0..1) and `stage` to the task hash, publishes the same as JSON, reads cancellation."""

    def __init__(self, redis_url: str | None) -> None:
        self.client = redis.Redis.from_url(redis_url, retry=Retry(store_backoff(), 2)) if redis_url else None
        self._update = self.client.register_script(LIVE_UPDATE) if self.client else None

    def report(self, task_id: str | None, done: int, total: int, stage: str) -> bool:
        """Records one step; True when the task has been cancelled meanwhile."""
        if self.client is None or task_id is None:
            return False
        try:
            status = self._update(*live_update(task_id, done / max(total, 1), stage))
        except (redis.ConnectionError, redis.TimeoutError):  # progress is best effort: Redis restarting
            return False
        return status == b"cancelled"

    def started(self, task_ids: list[str | None], stage: str) -> None:
        """The model work of these tasks begins: their wait for a replica ends (best effort, like `report`)."""
        known = [task_id for task_id in task_ids if task_id is not None]
        if self.client is None or not known:
            return
        pipe = self.client.pipeline(transaction=False)
        for task_id in known:
            self._update(*live_update(task_id, 0.0, stage), client=pipe)
        try:
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            pass

    def cancelled(self, task_ids: list[str | None]) -> list[bool]:
        """Which of these tasks are cancelled already, in one round trip (best effort, like `report`)."""
        known = [task_id for task_id in task_ids if task_id is not None]
        if self.client is None or not known:
            return [False] * len(task_ids)
        pipe = self.client.pipeline(transaction=False)
        for task_id in known:
            pipe.hget(keys.task(task_id), "status")
        try:
            status = dict(zip(known, pipe.execute(), strict=True))
        except (redis.ConnectionError, redis.TimeoutError):
            return [False] * len(task_ids)
        return [status.get(task_id) == b"cancelled" for task_id in task_ids]
