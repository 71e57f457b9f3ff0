"""Step states a task's jobs kept for forks (written by the model replicas, `records/checkpoints.py`), read by the
ingress and the runner; a fork's job starts from one by taking it as its own first checkpoint."""
from __future__ import annotations

import redis.asyncio as aioredis

from config import keys
from records.checkpoints import START


class KeptStates:
    def __init__(self, client: aioredis.Redis, checkpoint_ttl_s: int) -> None:
        self.client = client
        self.checkpoint_ttl_s = checkpoint_ttl_s
        self._start = client.register_script(START)

    async def steps(self, task_id: str) -> dict[int, list[int]]:
        """Seed → the steps whose states the task keeps (sorted); {} once they expired."""
        found: dict[int, list[int]] = {}
        for field in await self.client.hkeys(keys.task_kept(task_id)):
            seed, step = map(int, field.decode().split(":"))
            found.setdefault(seed, []).append(step)
        return {seed: sorted(steps) for seed, steps in found.items()}

    async def state(self, task_id: str, seed: int, step: int) -> bytes | None:
        return await self.client.hget(keys.task_kept(task_id), keys.kept_field(seed, step))

    async def start(self, task_id: str, digest: str, state: bytes) -> bool:
        """The live task's job (its request's digest) starts from `state` unless it checkpointed already."""
        return bool(await self._start(keys=[keys.task(task_id), keys.task_checkpoints(task_id)],
                                      args=[digest, state, self.checkpoint_ttl_s]))
