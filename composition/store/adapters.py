"""LoRA adapters as the image replicas published them: each family's catalogue and what each replica holds."""
from __future__ import annotations

import redis.asyncio as aioredis

from config import keys
from models.types import AdapterHolding, AdapterInfo


class AdapterStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def catalogue(self, family: str) -> dict[str, AdapterInfo]:
        """Adapter id → entry, in id order; empty until a replica of the family has started."""
        found = await self.client.hgetall(keys.adapters(family))
        return {name.decode(): AdapterInfo.model_validate_json(entry) for name, entry in sorted(found.items())}

    async def holdings(self, family: str) -> list[AdapterHolding]:
        """What each live replica of the family holds, by replica id."""
        found = await self.client.hgetall(keys.adapter_replicas(family))
        return [AdapterHolding.model_validate_json(entry) for _, entry in sorted(found.items())]
