"""Style profiles by soul id, as JSON."""
from __future__ import annotations

import redis.asyncio as aioredis

from composition.schemas.styles import Style
from config import keys


class StyleStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def put(self, soul_id: str, style: Style) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(keys.style(soul_id), style.model_dump_json())
        pipe.sadd(keys.styles(), soul_id)
        await pipe.execute()

    async def get(self, soul_id: str) -> Style | None:
        found = await self.client.get(keys.style(soul_id))
        return None if found is None else Style.model_validate_json(found)

    async def delete(self, soul_id: str) -> bool:
        """Whether there was a style to delete."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(keys.style(soul_id))
        pipe.srem(keys.styles(), soul_id)
        deleted, _ = await pipe.execute()
        return bool(deleted)

    async def all(self) -> dict[str, Style]:
        """Every style by soul id, in soul id order."""
        souls = sorted(member.decode() for member in await self.client.smembers(keys.styles()))
        return {soul: style for soul in souls if (style := await self.get(soul)) is not None}
