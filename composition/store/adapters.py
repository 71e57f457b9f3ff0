"""LoRA adapters: each family's catalogue as its replicas published it, merged with the adapters uploaded over HTTP,
and which replicas hold what."""
from __future__ import annotations

import redis.asyncio as aioredis

from config import keys
from models.types import AdapterHolding, AdapterInfo


class AdapterStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def catalogue(self, family: str) -> dict[str, AdapterInfo]:
        """Adapter id → entry, in id order: the uploads, and the replicas' (folder and hub; these win an id both
        have); the replicas' part is empty until a replica of the family has started."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.adapter_uploads(family))
            pipe.hgetall(keys.adapters(family))
            uploaded, published = await pipe.execute()
        found = {**uploaded, **published}
        return {name.decode(): AdapterInfo.model_validate_json(entry) for name, entry in sorted(found.items())}

    async def holdings(self, family: str) -> list[AdapterHolding]:
        """What each live replica of the family holds, by replica id."""
        found = await self.client.hgetall(keys.adapter_replicas(family))
        return [AdapterHolding.model_validate_json(entry) for _, entry in sorted(found.items())]

    async def add_upload(self, info: AdapterInfo) -> bool:
        """Records an uploaded adapter (its bytes already in the asset store) unless its id is taken; whether it did."""
        return bool(await self.client.hsetnx(keys.adapter_uploads(info.family), info.id, info.model_dump_json()))

    async def remove_upload(self, family: str, adapter_id: str) -> bool:
        """Forgets an uploaded adapter (its bytes stay: the store is write-once); whether there was one."""
        return bool(await self.client.hdel(keys.adapter_uploads(family), adapter_id))
