"""Style profiles by soul id, as JSON."""
from __future__ import annotations

import redis.asyncio as aioredis

from composition.errors import not_found
from composition.schemas.styles import StyleEntry, StyleProfile
from config import keys


class StyleStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def put(self, soul_id: str, profile: StyleProfile) -> StyleEntry:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(keys.style(soul_id), profile.model_dump_json())
        pipe.sadd(keys.styles(), soul_id)
        await pipe.execute()
        return StyleEntry(soul_id=soul_id, **profile.model_dump())

    async def get(self, soul_id: str, field: str = "soul_id") -> StyleEntry:
        found = await self.client.get(keys.style(soul_id))
        if found is None:
            raise not_found(f"style of soul {soul_id}", field)
        return StyleEntry(soul_id=soul_id, **StyleProfile.model_validate_json(found).model_dump())

    async def delete(self, soul_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(keys.style(soul_id))
        pipe.srem(keys.styles(), soul_id)
        deleted, _ = await pipe.execute()
        if not deleted:
            raise not_found(f"style of soul {soul_id}", "soul_id")

    async def all(self) -> list[StyleEntry]:
        souls = sorted(member.decode() for member in await self.client.smembers(keys.styles()))
        return [await self.get(soul) for soul in souls]
