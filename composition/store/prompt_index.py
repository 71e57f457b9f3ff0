"""The prompt index: which prompt key a prompt maps to in its scope (exact normalised keys, and a vector set per scope
for the semantic match of `composition/dedup/resolve.py`), prompts unused for the index TTL evicted."""
from __future__ import annotations

import hashlib
import time

import numpy as np
import redis.asyncio as aioredis

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


def digest(*parts: object, length: int = 24) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:length]


class PromptIndex:
    """Which prompt key a prompt maps to, and each key's prompt."""

    def __init__(self, client: aioredis.Redis, index_ttl_s: float = 30 * 86400, evict_batch: int = 16) -> None:
        self.client = client
        self.index_ttl_s = int(index_ttl_s)
        self.evict_batch = evict_batch
        self._touch = client.register_script(_TOUCH)
        self._register = client.register_script(_REGISTER)
        self._evict = client.register_script(_EVICT)

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
