"""Measured model time per family: a fixed cost per request plus a cost per pixel-frame-step, fitted by
exponentially weighted least squares over the results seen so far (`/v1/videos/estimate`, queue ETAs)."""
from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from config import keys
from models.types import Metadata

_RECORD = """
-- KEYS: timing; ARGV: units of work (pixel-frame-steps), ms, weight of the new sample
-- Decayed sums of a weighted least-squares fit ms = fixed + per_unit × units, and the mean ms per request.
local x, y, weight = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local decay = 1 - weight
local sums = {n = 1, sx = x, sy = y, sxx = x * x, sxy = x * y}
for field, value in pairs(sums) do
  local old = redis.call('HGET', KEYS[1], field)
  if old then value = tonumber(old) * decay + value end
  redis.call('HSET', KEYS[1], field, tostring(value))
end
local job = redis.call('HGET', KEYS[1], 'ms_per_job')
redis.call('HSET', KEYS[1], 'ms_per_job', tostring(job and tonumber(job) * decay + y * weight or y))
return redis.call('HINCRBY', KEYS[1], 'samples', 1)
"""
_SPREAD = 0.05  # sizes must differ by this share of their mean before the fixed cost is told apart


@dataclass(frozen=True)
class CostModel:
    """ms = fixed_ms + ms_per_unit × units, from `samples` measured results (whose mean is `ms_per_job`)."""

    fixed_ms: float
    ms_per_unit: float
    samples: int
    ms_per_job: float

    def ms(self, units: int) -> float:
        return self.fixed_ms + self.ms_per_unit * units

    @classmethod
    def fit(cls, n: float, sx: float, sy: float, sxx: float, sxy: float, samples: int, ms_per_job: float) -> CostModel:
        """Least squares on the decayed sums; proportional (no fixed cost) while every sample had one size, or
        when the fit would make either term negative."""
        mean_x = sx / n
        variance = sxx / n - mean_x * mean_x
        if variance > (_SPREAD * mean_x) ** 2:
            slope = (sxy / n - mean_x * sy / n) / variance
            fixed = sy / n - slope * mean_x
            if slope > 0 and fixed >= 0:
                return cls(fixed, slope, samples, ms_per_job)
        return cls(0.0, sy / sx, samples, ms_per_job)


def work_units(width: int, height: int, steps: int, num_frames: int = 1) -> int:
    """A request's units of work: pixel-frame-steps."""
    return width * height * steps * num_frames


class TimingStore:
    def __init__(self, client: aioredis.Redis, weight: float = 0.1) -> None:
        self.client = client
        self.weight = weight
        self._record = client.register_script(_RECORD)

    async def record(self, family: str, metadata: Metadata, units: int) -> None:
        """One result's model time (its batch's run time over the batch size) and its units of work."""
        run_ms = metadata.run_ms / max(metadata.batch_size, 1)
        await self._record(keys=[keys.timing(family)], args=[max(units, 1), run_ms, self.weight])

    async def get(self, family: str) -> CostModel | None:
        """The fitted cost, or None before the first measurement."""
        found = await self.client.hmget(keys.timing(family), "n", "sx", "sy", "sxx", "sxy", "ms_per_job", "samples")
        if found[0] is None:
            return None
        n, sx, sy, sxx, sxy, ms_per_job = (float(value) for value in found[:6])
        return CostModel.fit(n, sx, sy, sxx, sxy, int(found[6]), ms_per_job)
