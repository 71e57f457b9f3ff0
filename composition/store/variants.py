"""Variant pools: each prompt key's variants (deterministic seeds → assets), their deliveries, users' seen sets and the
claims of the tasks rendering missing variants."""
from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

from composition.store.prompt_index import digest
from config import keys

_DELIVER_UNSEEN = """
-- KEYS: deliveries, seen; returns the unseen variant with the fewest deliveries, now delivered, or nil
for _, variant in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('SISMEMBER', KEYS[2], variant) == 0 then
    redis.call('ZINCRBY', KEYS[1], 1, variant)
    redis.call('SADD', KEYS[2], variant)
    return variant
  end
end
return nil
"""

_VARIANTS_FOR_SEEDS = """
-- KEYS: seeds hash, deliveries; ARGV: variant key prefix, seeds... For each seed: {} when it has no variant yet,
-- else {deliveries, field, value, ...} of its variant hash.
local found = {}
for i = 2, #ARGV do
  local record = {}
  local vid = redis.call('HGET', KEYS[1], ARGV[i])
  if vid then
    record = redis.call('HGETALL', ARGV[1] .. vid)
    if #record > 0 then table.insert(record, 1, redis.call('ZSCORE', KEYS[2], vid) or '0') end
  end
  found[#found + 1] = record
end
return found
"""

_RESERVE_SLOT = """
-- KEYS: slots; ARGV: cap. The next slot index, or -1 when the pool is full.
local used = redis.call('HLEN', KEYS[1])
if used >= tonumber(ARGV[1]) then return -1 end
redis.call('HSET', KEYS[1], used, 'reserved')
return used
"""

_ADD_VARIANT = """
-- KEYS: variant, seeds hash, variants, deliveries; ARGV: id, prompt key, seed, asset id, metadata, now. The first add
-- of a (prompt key, seed) makes its variant; a later one (another task that rendered it too) changes nothing.
if redis.call('HEXISTS', KEYS[1], 'asset_id') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'prompt_key', ARGV[2], 'seed', ARGV[3], 'asset_id', ARGV[4],
           'metadata', ARGV[5], 'created_at', ARGV[6])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[4], 'NX', 0, ARGV[1])
return 1
"""


_CLAIM_RENDER = """
-- KEYS: render claim; ARGV: task id, ttl ms. The claim is the task's if free or its own already (a retry of the task
-- that took it); returns its holder.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

_RELEASE_RENDER = """
-- KEYS: render claim; ARGV: task id. Drops the claim if the task holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

RENDER_CLAIM_S = 600.0  # a claim whose task died unretried lapses after this; a live holder releases it when done


class Variant(BaseModel):
    id: str
    prompt_key: str
    seed: int
    asset_id: str
    created_at: float
    deliveries: int = 0
    metadata: dict[str, Any] = {}


def _variant(record: dict[bytes, bytes], deliveries: bytes | float | None) -> Variant:
    """A variant from its raw hash and its delivery count."""
    data = {k.decode(): v.decode() for k, v in record.items()}
    return Variant.model_validate({**data, "metadata": json.loads(data.get("metadata") or "{}"),
                                   "deliveries": int(float(deliveries or 0))})


def slot_seed(prompt_key: str, slot: int) -> int:
    """The seed of a prompt key's n-th variant: deterministic, so retries and races make the same image."""
    return int(digest(prompt_key, slot, length=12), 16)


def variant_id(prompt_key: str, seed: int) -> str:
    return digest(prompt_key, seed)


class Variants:
    """The pool of variants (seeds → assets) behind each prompt key, and who was shown which."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        (self._deliver_unseen, self._reserve_slot, self._variants_for_seeds, self._add_variant, self._claim_render,
         self._release_render) = (
            client.register_script(script) for script in (_DELIVER_UNSEEN, _RESERVE_SLOT, _VARIANTS_FOR_SEEDS,
                                                          _ADD_VARIANT, _CLAIM_RENDER, _RELEASE_RENDER))

    async def variants_for_seeds(self, prompt_key: str, seeds: list[int]) -> list[Variant | None]:
        """Each seed's variant (None where there is none yet) in one round trip: the cache-hit path."""
        found = await self._variants_for_seeds(keys=[keys.prompt_seeds(prompt_key), keys.prompt_deliveries(prompt_key)],
                                               args=[keys.variant(""), *map(str, seeds)])
        return [_variant(dict(zip(record[1::2], record[2::2])), record[0]) if record else None for record in found]

    async def add_variant(self, prompt_key: str, seed: int, asset_id: str, metadata: dict[str, Any]) -> bool:
        """Makes the variant of (prompt key, seed) the first image added for it, whatever is added after (tasks of
        other encodings or counts render a new prompt's first variants at once: each caller then reads the one
        stored); whether this call made it."""
        vid = variant_id(prompt_key, seed)
        return bool(await self._add_variant(
            keys=[keys.variant(vid), keys.prompt_seeds(prompt_key), keys.prompt_variants(prompt_key),
                  keys.prompt_deliveries(prompt_key)],
            args=[vid, prompt_key, seed, asset_id, json.dumps(metadata), time.time()]))

    # Single flight: one task renders a missing variant, the others that miss it wait for its add.

    async def claim_render(self, prompt_key: str, seed: int, task_id: str) -> str:
        """Claims the rendering of (prompt key, seed)'s variant for `task_id`; the claim's holder (this task if it
        got it)."""
        holder = await self._claim_render(keys=[keys.variant_render(prompt_key, seed)],
                                          args=[task_id, int(RENDER_CLAIM_S * 1000)])
        return holder.decode()

    async def release_render(self, prompt_key: str, seed: int, task_id: str) -> None:
        await self._release_render(keys=[keys.variant_render(prompt_key, seed)], args=[task_id])

    async def variant(self, vid: str) -> Variant | None:
        return (await self._load([vid]))[0]

    async def variants(self, prompt_key: str) -> list[Variant]:
        ids = await self.client.zrange(keys.prompt_variants(prompt_key), 0, -1)
        return [v for v in await self._load([i.decode() for i in ids]) if v]

    async def _load(self, ids: list[str | None]) -> list[Variant | None]:
        """Variants by id (None stays None) in two round trips, whatever their number."""
        pipe = self.client.pipeline(transaction=False)
        for vid in ids:
            pipe.hgetall(keys.variant(vid or "-"))
        records = [raw if raw and vid else None for vid, raw in zip(ids, await pipe.execute(), strict=True)]
        pipe = self.client.pipeline(transaction=False)
        for vid, data in zip(ids, records, strict=True):
            if data:
                pipe.zscore(keys.prompt_deliveries(data[b"prompt_key"].decode()), vid)
        deliveries = iter(await pipe.execute())
        return [_variant(data, next(deliveries)) if data else None for data in records]

    async def reserve_slots(self, prompt_key: str, count: int) -> None:
        """Slots 0..count-1 exist from now on (images requests take the first n variants)."""
        await self.client.hsetnx(keys.prompt_slots(prompt_key), "0", "reserved")
        if count > 1:
            pipe = self.client.pipeline(transaction=True)
            for slot in range(1, count):
                pipe.hsetnx(keys.prompt_slots(prompt_key), str(slot), "reserved")
            await pipe.execute()

    async def reserve_new_slot(self, prompt_key: str, cap: int) -> int | None:
        """A fresh slot for one more variant, or None when the pool holds `cap` already."""
        slot = int(await self._reserve_slot(keys=[keys.prompt_slots(prompt_key)], args=[cap]))
        return None if slot < 0 else slot

    # Deliveries and seen sets.

    async def deliver_unseen(self, prompt_key: str, user_id: str) -> str | None:
        """Atomically picks the user's unseen variant with the fewest deliveries and marks it seen."""
        found = await self._deliver_unseen(keys=[keys.prompt_deliveries(prompt_key), keys.seen(user_id)])
        return found.decode() if found else None

    async def deliver(self, prompt_key: str, vid: str, user_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.zincrby(keys.prompt_deliveries(prompt_key), 1, vid)
        pipe.sadd(keys.seen(user_id), vid)
        await pipe.execute()

    async def least_delivered(self, prompt_key: str) -> str | None:
        found = await self.client.zrange(keys.prompt_deliveries(prompt_key), 0, 0)
        return found[0].decode() if found else None

    async def mark_seen(self, vid: str, user_id: str) -> None:
        await self.client.sadd(keys.seen(user_id), vid)

    async def seen(self, user_id: str) -> list[str]:
        return sorted(member.decode() for member in await self.client.smembers(keys.seen(user_id)))
