"""Per-step progress from a replica into the task's Redis record (and its event channel)."""
from __future__ import annotations

import json
import time

import redis
from redis.retry import Retry

from config import keys
from config.settings import store_backoff


class Cancelled(Exception):
    """Every task of a running group was cancelled: the pipeline stops at this step."""


class ProgressReporter:
    """Writes `progress` (0..1) and `stage` to the task hash, publishes the same as JSON, reads cancellation."""

    def __init__(self, redis_url: str | None) -> None:
        self.client = redis.Redis.from_url(redis_url, retry=Retry(store_backoff(), 2)) if redis_url else None

    def report(self, task_id: str | None, done: int, total: int, stage: str) -> bool:
        """Records one step; True when the task has been cancelled meanwhile."""
        if self.client is None or task_id is None:
            return False
        update = {"progress": round(done / max(total, 1), 4), "stage": stage, "updated_at": time.time()}
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(keys.task(task_id), "status")
        pipe.hset(keys.task(task_id), mapping=update)
        pipe.publish(keys.task_events(task_id), json.dumps({"id": task_id, **update}))
        try:
            status = pipe.execute()[0]
        except (redis.ConnectionError, redis.TimeoutError):  # progress is best effort: Redis restarting
            return False
        return status == b"cancelled"

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
