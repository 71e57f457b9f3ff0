"""Measured model time per unit of work (step × frame), for `/v1/videos/estimate`."""
from __future__ import annotations

import redis.asyncio as aioredis

from config import keys

_RECORD = """
-- KEYS: timing; ARGV: ms per unit, weight of the new sample (exponential moving average)
local old = redis.call('HGET', KEYS[1], 'ms_per_unit')
local value = tonumber(ARGV[1])
if old then value = tonumber(old) * (1 - tonumber(ARGV[2])) + value * tonumber(ARGV[2]) end
redis.call('HSET', KEYS[1], 'ms_per_unit', value)
return redis.call('HINCRBY', KEYS[1], 'samples', 1)
"""


class TimingStore:
    def __init__(self, client: aioredis.Redis, weight: float = 0.3) -> None:
        self.client = client
        self.weight = weight
        self._record = client.register_script(_RECORD)

    async def record(self, family: str, run_ms: float, units: int) -> None:
        await self._record(keys=[keys.timing(family)], args=[run_ms / max(units, 1), self.weight])

    async def get(self, family: str) -> tuple[float, int] | None:
        """(ms per unit, samples), or None before the first measurement."""
        found = await self.client.hmget(keys.timing(family), "ms_per_unit", "samples")
        return (float(found[0]), int(found[1])) if found[0] else None
