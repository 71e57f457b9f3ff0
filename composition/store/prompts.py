"""Prompt index (exact keys and a vector set per scope), variant pools with deterministic seeds, and users' seen
sets."""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from pydantic import BaseModel

from config import keys

_TOUCH = """
-- KEYS: exact, recent; ARGV: now, ttl s. Records a use of an exact match (it stays indexed).
local found = redis.call('GET', KEYS[1])
if found then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 'XX', ARGV[1], found)
end
return found
"""

_REGISTER = """
-- KEYS: exact, prompt hash, vectors, recent; ARGV: prompt key, prompt, normalised, scope, embedding, now, ttl s.
-- {prompt key, 1 when this call indexed it, 0 when another request had}.
local existing = redis.call('GET', KEYS[1])
if existing then return {existing, 0} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[7])
redis.call('HSET', KEYS[2], 'prompt', ARGV[2], 'normalized', ARGV[3], 'scope', ARGV[4], 'exact', KEYS[1],
  'created_at', ARGV[6])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], 'embedding', ARGV[5])
  redis.call('VADD', KEYS[3], 'FP32', ARGV[5], ARGV[1], 'Q8')
end
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
return {ARGV[1], 1}
"""

_EVICT = """
-- KEYS: recent; ARGV: cutoff, limit, prompt hash prefix, vectors prefix. Prompts unused since the cutoff leave the
-- index (vector element, exact key, stored embedding); their hash and variants stay. Returns how many left.
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, prompt_key in ipairs(stale) do
  local record = redis.call('HMGET', ARGV[3] .. prompt_key, 'scope', 'exact')
  if record[1] then redis.call('VREM', ARGV[4] .. record[1], prompt_key) end
  if record[2] then redis.call('DEL', record[2]) end
  redis.call('HDEL', ARGV[3] .. prompt_key, 'embedding')
  redis.call('ZREM', KEYS[1], prompt_key)
end
return #stale
"""

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


def digest(*parts: object, length: int = 24) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:length]


def slot_seed(prompt_key: str, slot: int) -> int:
    """The seed of a prompt key's n-th variant: deterministic, so retries and races make the same image."""
    return int(digest(prompt_key, slot, length=12), 16)


def variant_id(prompt_key: str, seed: int) -> str:
    return digest(prompt_key, seed)


class PromptStore:
    """Which prompt key a prompt maps to, and the pool of variants (seeds → assets) behind each key."""

    def __init__(self, client: aioredis.Redis, index_ttl_s: float = 30 * 86400, evict_batch: int = 16) -> None:
        self.client = client
        self.index_ttl_s = int(index_ttl_s)
        self.evict_batch = evict_batch
        self._touch = client.register_script(_TOUCH)
        self._register = client.register_script(_REGISTER)
        self._evict = client.register_script(_EVICT)
        self._deliver_unseen = client.register_script(_DELIVER_UNSEEN)
        self._reserve_slot = client.register_script(_RESERVE_SLOT)
        self._variants_for_seeds = client.register_script(_VARIANTS_FOR_SEEDS)

    # Prompt index.

    async def exact(self, scope: str, normalized: str) -> str | None:
        """The prompt key of this normalised prompt in the scope, or None."""
        found = await self.client.get(keys.prompt_exact(scope, digest(normalized)))
        return found.decode() if found else None

    async def touch(self, scope: str, normalized: str) -> None:
        """A use of an exactly matched prompt: it stays indexed for another index TTL."""
        await self._touch(keys=[keys.prompt_exact(scope, digest(normalized)), keys.prompt_recent()],
                          args=[time.time(), self.index_ttl_s])

    async def candidates(self, scope: str, vector: np.ndarray, count: int) -> list[tuple[str, str, np.ndarray]]:
        """(prompt key, normalised prompt, float32 embedding) of the scope's `count` nearest prompts: an HNSW
        search of its vector set, so the cost grows with log(index size), never with the index itself."""
        found = await self.client.execute_command("VSIM", keys.prompt_vectors(scope), "FP32",
                                                  vector.astype(np.float32).tobytes(), "COUNT", count)
        members = [member.decode() for member in found or []]
        pipe = self.client.pipeline(transaction=False)
        for member in members:
            pipe.hmget(keys.prompt(member), "normalized", "embedding")
        return [(member, normalized.decode(), np.frombuffer(embedding, dtype=np.float32))
                for member, (normalized, embedding) in zip(members, await pipe.execute(), strict=True)
                if normalized and embedding]

    async def register(self, scope: str, prompt: str, normalized: str,
                       embedding: np.ndarray | None) -> tuple[str, bool]:
        """Indexes a prompt (its key is a digest of scope and normalised prompt, so concurrent writers agree):
        (prompt key, whether this call indexed it); lets up to `evict_batch` prompts unused for the index TTL leave
        the index, so it never grows without bound."""
        prompt_key = digest(scope, normalized)
        vector = embedding.astype(np.float32).tobytes() if embedding is not None else b""
        now = time.time()
        found, created = await self._register(
            keys=[keys.prompt_exact(scope, digest(normalized)), keys.prompt(prompt_key), keys.prompt_vectors(scope),
                  keys.prompt_recent()],
            args=[prompt_key, prompt, normalized, scope, vector, now, self.index_ttl_s])
        await self.evict(now - self.index_ttl_s)
        return found.decode(), bool(created)

    async def evict(self, cutoff: float) -> int:
        """Prompts unused since `cutoff` (at most `evict_batch`) leave the index; how many did."""
        return int(await self._evict(keys=[keys.prompt_recent()],
                                     args=[cutoff, self.evict_batch, keys.prompt(""), keys.prompt_vectors("")]))

    async def alias(self, scope: str, normalized: str, prompt_key: str) -> None:
        """Remembers a semantic match as exact, so the same wording next time skips the embedding (until it goes
        unused for the index TTL); the match is a use of the prompt."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(keys.prompt_exact(scope, digest(normalized)), prompt_key, nx=True, ex=self.index_ttl_s)
        pipe.zadd(keys.prompt_recent(), {prompt_key: time.time()}, xx=True)
        await pipe.execute()

    async def prompt_of(self, prompt_key: str) -> str | None:
        found = await self.client.hget(keys.prompt(prompt_key), "prompt")
        return found.decode() if found else None

    # Variants.

    async def variants_for_seeds(self, prompt_key: str, seeds: list[int]) -> list[Variant | None]:
        """Each seed's variant (None where there is none yet) in one round trip: the cache-hit path."""
        found = await self._variants_for_seeds(keys=[keys.prompt_seeds(prompt_key), keys.prompt_deliveries(prompt_key)],
                                               args=[keys.variant(""), *map(str, seeds)])
        return [_variant(dict(zip(record[1::2], record[2::2])), record[0]) if record else None for record in found]

    async def add_variant(self, prompt_key: str, seed: int, asset_id: str, metadata: dict[str, Any]) -> Variant:
        """Idempotent: the same (prompt key, seed) is one variant however often it is added."""
        vid = variant_id(prompt_key, seed)
        now = time.time()
        pipe = self.client.pipeline(transaction=True)
        pipe.hsetnx(keys.variant(vid), "created_at", now)
        pipe.hset(keys.variant(vid), mapping={"id": vid, "prompt_key": prompt_key, "seed": seed, "asset_id": asset_id,
                                              "metadata": json.dumps(metadata)})
        pipe.hset(keys.prompt_seeds(prompt_key), str(seed), vid)
        pipe.zadd(keys.prompt_variants(prompt_key), {vid: now}, nx=True)
        pipe.zadd(keys.prompt_deliveries(prompt_key), {vid: 0}, nx=True)
        await pipe.execute()
        return await self.variant(vid)

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
