"""Assets: content-addressed bytes in a `Blobs` backend (a folder or an object store), metadata in Redis. Clients
name assets by id, never by path; the backends' I/O runs off the event loop."""
from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from composition.schemas.assets import AssetInfo
from config import keys
from records.blobs import Blobs


class AssetStore:
    """`put` writes bytes once under their digest and records metadata; an asset is there when both are.

    With `private` (auth on), an asset is readable by its owners only, unless it is shared: text-derived
    generations that the prompt cache serves to every user, and anything stored without an owner."""

    def __init__(self, client: aioredis.Redis, blobs: Blobs, private: bool = False) -> None:
        self.client = client
        self.blobs = blobs
        self.private = private

    async def put(self, data: bytes, content_type: str, kind: str, owner: str = "",
                  size: tuple[int, int] | None = None, shared: bool = False) -> AssetInfo:
        asset_id = hashlib.sha256(data).hexdigest()[:32]
        await self.blobs.put_once(asset_id, data)
        info = AssetInfo(id=asset_id, content_type=content_type, bytes=len(data), kind=kind,
                         width=size[0] if size else None, height=size[1] if size else None, created_at=time.time())
        record = {k: str(v) for k, v in info.model_dump(exclude_none=True).items()}
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(keys.asset(asset_id), "created_at", record.pop("created_at"))
            pipe.hset(keys.asset(asset_id), mapping=record)
            _claim(pipe, asset_id, owner, shared)
            await pipe.execute()
        return info

    async def rendition(self, asset_id: str, recipe: str, owner: str = "", shared: bool = False) -> str | None:
        """The id of `asset_id` as re-encoded by `recipe` ("webp:90") before, now also `owner`'s; None if never."""
        found = await self.client.hget(keys.asset_renditions(asset_id), recipe)
        if found is None or not await self.blobs.exists(found.decode()):
            return None
        async with self.client.pipeline(transaction=True) as pipe:
            _claim(pipe, found.decode(), owner, shared)
            await pipe.execute()
        return found.decode()

    async def put_rendition(self, asset_id: str, recipe: str, data: bytes, content_type: str, owner: str = "",
                            size: tuple[int, int] | None = None, shared: bool = False) -> AssetInfo:
        """Stores `data`, `asset_id` re-encoded by `recipe`, as that rendition (see `link_rendition`)."""
        return await self.link_rendition(asset_id, recipe, await self.put(data, content_type, "generated", owner, size,
                                                                          shared), owner, shared)

    async def link_rendition(self, asset_id: str, recipe: str, stored: AssetInfo, owner: str = "",
                             shared: bool = False) -> AssetInfo:
        """`stored` as `asset_id` re-encoded by `recipe`, where `rendition` finds it; where requests re-encoded it at
        once, the first linked stays the rendition and the others get it (now also `owner`'s)."""
        renditions = keys.asset_renditions(asset_id)
        if not await self.client.hsetnx(renditions, recipe, stored.id):
            first = await self.rendition(asset_id, recipe, owner, shared)
            if first is not None and (info := await self.info(first, owner)) is not None:
                return info
            await self.client.hset(renditions, recipe, stored.id)  # the first one's bytes are gone
        return stored

    async def put_recipe(self, asset_id: str, recipe: str) -> None:
        """Keeps how a generated asset was made (the recipe's JSON) for its provenance and replay."""
        await self.client.set(keys.asset_recipe(asset_id), recipe)

    async def recipe(self, asset_id: str) -> str | None:
        """The recipe's JSON of an asset whose `info` the caller has read; None for one not generated here."""
        found = await self.client.get(keys.asset_recipe(asset_id))
        return found.decode() if found is not None else None

    async def info(self, asset_id: str, user: str | None = None) -> AssetInfo | None:
        """Metadata of an asset `user` may read; None when it is missing or another user's private one."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.asset(asset_id))
            pipe.sismember(keys.asset_owners(asset_id), user or "")
            raw, owned = await pipe.execute()
        readable = not self.private or owned or raw.get(b"shared") == b"1"
        if not raw or not readable or not await self.blobs.exists(asset_id):
            return None
        return AssetInfo.model_validate({k.decode(): v.decode() for k, v in raw.items() if k != b"shared"})

    async def read(self, asset_id: str, user: str | None = None) -> bytes | None:
        """The bytes of an asset `user` may read, or None (as `info`)."""
        return None if await self.info(asset_id, user) is None else await self.bytes_of(asset_id)

    async def bytes_of(self, asset_id: str) -> bytes:
        """The bytes of an asset whose `info` the caller has read."""
        return await self.blobs.get(asset_id)

    def stream(self, asset_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of an asset whose `info` the caller has read, in pieces."""
        return self.blobs.stream(asset_id, start, end)

    async def signed_url(self, asset_id: str, expires_s: int) -> str | None:
        """A URL of the object store that serves the bytes for `expires_s`; None for a folder."""
        return await self.blobs.signed_url(asset_id, expires_s)


def _claim(pipe, asset_id: str, owner: str, shared: bool) -> None:
    """Queues on `pipe`: `owner` may read the asset; a shared one (or one without an owner) is readable by all."""
    if shared or not owner:
        pipe.hset(keys.asset(asset_id), "shared", "1")  # once shared, always: its bytes went public
    if owner:
        pipe.sadd(keys.asset_owners(asset_id), owner)
