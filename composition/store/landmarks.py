"""Recently used landmarks per soul, user and city, so selfies do not repeat a place."""
from __future__ import annotations

import random

import redis.asyncio as aioredis

from config import keys

_CHOOSE = """
-- KEYS: recent list; ARGV: how many to remember, candidates... (already shuffled)
local recent = {}
for _, key in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do recent[key] = true end
local chosen = ARGV[2]  -- only kept when every candidate is recent (a city of one landmark)
for i = 2, #ARGV do
  if not recent[ARGV[i]] then chosen = ARGV[i]; break end
end
redis.call('LREM', KEYS[1], 0, chosen)
redis.call('LPUSH', KEYS[1], chosen)
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
return chosen
"""


class LandmarkChooser:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._choose = client.register_script(_CHOOSE)

    async def choose(self, soul_id: str, user_id: str, city_key: str, landmarks: list[str], remember: int) -> str:
        """A random landmark not among the last `remember` ones for this soul/user/city; atomic under concurrency."""
        candidates = random.sample(landmarks, len(landmarks))
        remember = max(1, min(remember, len(landmarks) - 1))
        chosen = await self._choose(keys=[keys.recent_landmarks(soul_id, user_id, city_key)],
                                    args=[remember, *candidates])
        return chosen.decode()
