"""The latent library of approximate reuse: per family, the kept step states of finished jobs by prompt key, capped
in bytes (least recently used out first) and dropped after `reuse.ttl_s` unused. A near-duplicate prompt's job takes
its neighbour's state as its first checkpoint (`KeptStates.start`)."""
from __future__ import annotations

import time

import redis.asyncio as aioredis

from config import keys
from config.composition import ReuseArgs

_DROP = """
local function drop(prefix, lru, sizes, total, key)
  local size = tonumber(redis.call('HGET', sizes, key) or '0')
  redis.call('DEL', prefix .. key)
  redis.call('HDEL', sizes, key)
  redis.call('ZREM', lru, key)
  redis.call('DECRBY', total, size)
end
"""

_ADD = _DROP + """
-- KEYS: task kept, entry, lru, sizes, total; ARGV: seed field prefix, prompt key, now, ttl, cap bytes, entry prefix.
-- Copies one job's kept states into the library (first come: an entry is never replaced); returns its bytes.
local now, ttl, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - ttl)) do
  drop(ARGV[6], KEYS[3], KEYS[4], KEYS[5], key)
end
if redis.call('HEXISTS', KEYS[4], ARGV[2]) == 1 then return 0 end
local flat, size = redis.call('HGETALL', KEYS[1]), 0
for i = 1, #flat, 2 do
  if string.sub(flat[i], 1, #ARGV[1]) == ARGV[1] then
    redis.call('HSET', KEYS[2], string.sub(flat[i], #ARGV[1] + 1), flat[i + 1])
    size = size + #flat[i + 1]
  end
end
if size == 0 or size > cap then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('HSET', KEYS[4], ARGV[2], size)
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('INCRBY', KEYS[5], size)
while tonumber(redis.call('GET', KEYS[5])) > cap do
  drop(ARGV[6], KEYS[3], KEYS[4], KEYS[5], redis.call('ZRANGE', KEYS[3], 0, 0)[1])
end
return size
"""

_TAKE = """
-- KEYS: entry, lru; ARGV: target step, now, ttl, prompt key. {step, state} of the entry's latest kept step at or
-- before the target (the entry's use is recorded), or nil.
local best = -1
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local step = tonumber(field)
  if step <= tonumber(ARGV[1]) and step > best then best = step end
end
if best < 0 then return nil end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {best, redis.call('HGET', KEYS[1], tostring(best))}
"""


class LatentLibrary:
    def __init__(self, client: aioredis.Redis, args: ReuseArgs) -> None:
        self.client = client
        self.args = args
        self._add = client.register_script(_ADD)
        self._take = client.register_script(_TAKE)

    async def add(self, family: str, prompt_key: str, task_id: str, seed: int) -> int:
        """Keeps the states the task's job of `seed` kept (`steps.keep_steps`) as the prompt key's entry; the bytes
        added (0: none kept, already there, or over the cap alone)."""
        return int(await self._add(
            keys=[keys.task_kept(task_id), keys.reuse_entry(family, prompt_key), keys.reuse_lru(family),
                  keys.reuse_sizes(family), keys.reuse_bytes(family)],
            args=[keys.kept_seed(seed), prompt_key, time.time(), self.args.ttl_s,
                  int(self.args.max_mb * 2**20), keys.reuse_entry(family)]))

    async def take(self, family: str, prompt_key: str, target: int) -> tuple[int, bytes] | None:
        """(step, state) of the entry's latest kept step at or before `target`, or None."""
        found = await self._take(keys=[keys.reuse_entry(family, prompt_key), keys.reuse_lru(family)],
                                 args=[target, time.time(), self.args.ttl_s, prompt_key])
        return (int(found[0]), found[1]) if found else None

    async def usage(self, family: str) -> tuple[int, int]:
        """(entries, bytes) the family's library holds."""
        entries = await self.client.zcard(keys.reuse_lru(family))
        return entries, int(await self.client.get(keys.reuse_bytes(family)) or 0)
