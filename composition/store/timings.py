"""Measured model time per unit of work (step × frame) and per request: `/v1/videos/estimate`, queue ETAs."""
from __future__ import annotations

import redis.asyncio as aioredis

from config import keys
from models.types import Metadata

_RECORD = """
-- KEYS: timing; ARGV: ms per unit, ms per request, weight of the new sample (exponential moving averages)
local weight = tonumber(ARGV[3])
for index, field in ipairs({'ms_per_unit', 'ms_per_job'}) do
  local old = redis.call('HGET', KEYS[1], field)
  local value = tonumber(ARGV[index])
  if old then value = tonumber(old) * (1 - weight) + value * weight end
  redis.call('HSET', KEYS[1], field, value)
end
return redis.call('HINCRBY', KEYS[1], 'samples', 1)
"""


class TimingStore:
    def __init__(self, client: aioredis.Redis, weight: float = 0.3) -> None:
        self.client = client
        self.weight = weight
        self._record = client.register_script(_RECORD)

    async def record(self, family: str, metadata: Metadata, units: int) -> None:
        """One result's model time (its batch's run time over the batch size) and its units of work (steps, ×
        frames for videos)."""
        run_ms = metadata.run_ms / max(metadata.batch_size, 1)
        await self._record(keys=[keys.timing(family)], args=[run_ms / max(units, 1), run_ms, self.weight])

    async def get(self, family: str) -> tuple[float, int] | None:
        """(ms per unit, samples), or None before the first measurement."""
        found = await self.client.hmget(keys.timing(family), "ms_per_unit", "samples")
        return (float(found[0]), int(found[1])) if found[0] else None
