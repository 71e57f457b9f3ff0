"""Per-step progress from a replica into the task's Redis record (and its event channel)."""
from __future__ import annotations

import json
import time

import redis


def task_key(task_id: str) -> str:
    return f"montage:task:{task_id}"


def task_events(task_id: str) -> str:
    return f"montage:task:{task_id}:events"


class ProgressReporter:
    """Writes `progress` (0..1) and `stage` to the task hash and publishes the same as JSON."""

    def __init__(self, redis_url: str | None) -> None:
        self.client = redis.Redis.from_url(redis_url) if redis_url else None

    def report(self, task_id: str | None, done: int, total: int, stage: str) -> None:
        if self.client is None or task_id is None:
            return
        update = {"progress": round(done / max(total, 1), 4), "stage": stage, "updated_at": time.time()}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(task_key(task_id), mapping=update)
        pipe.publish(task_events(task_id), json.dumps({"id": task_id, **update}))
        pipe.execute()
