"""Assets: content-addressed files on disk, metadata in Redis. Clients name assets by id, never by path; file I/O
runs off the event loop."""
from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
from pydantic import BaseModel

from config import keys
from config.ids import HEX_ID

ASSET_ID = re.compile(HEX_ID)


def asset_url(asset_id: str) -> str:
    """Where the API serves an asset's bytes."""
    return f"/v1/assets/{asset_id}"


class AssetInfo(BaseModel):
    id: str
    content_type: str
    bytes: int
    kind: str
    width: int | None = None
    height: int | None = None
    created_at: float

    @property
    def url(self) -> str:
        return asset_url(self.id)


class AssetStore:
    """`put` writes bytes once under their digest (atomic rename) and records metadata; `path` only maps ids.

    With `private` (auth on), an asset is readable by its owners only, unless it is shared: text-derived
    generations that the prompt cache serves to every user, and anything stored without an owner."""

    def __init__(self, client: aioredis.Redis, root: Path, private: bool = False) -> None:
        self.client = client
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.private = private

    def path(self, asset_id: str) -> Path:
        """Where an asset's bytes live: only ever under the root (ids are validated at every API boundary)."""
        if not isinstance(asset_id, str) or not ASSET_ID.match(asset_id):
            raise ValueError(f"not an asset id: {asset_id!r}")
        return self.root / asset_id[:2] / asset_id

    async def put(self, data: bytes, content_type: str, kind: str, owner: str = "",
                  size: tuple[int, int] | None = None, shared: bool = False) -> AssetInfo:
        asset_id = hashlib.sha256(data).hexdigest()[:32]
        await asyncio.to_thread(_write_once, self.path(asset_id), data)
        info = AssetInfo(id=asset_id, content_type=content_type, bytes=len(data), kind=kind,
                         width=size[0] if size else None, height=size[1] if size else None, created_at=time.time())
        record = {k: str(v) for k, v in info.model_dump(exclude_none=True).items()}
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(keys.asset(asset_id), "created_at", record.pop("created_at"))
            pipe.hset(keys.asset(asset_id), mapping=record)
            if shared or not owner:
                pipe.hset(keys.asset(asset_id), "shared", "1")  # once shared, always: its bytes went public
            if owner:
                pipe.sadd(keys.asset_owners(asset_id), owner)
            await pipe.execute()
        return info

    async def info(self, asset_id: str, user: str | None = None) -> AssetInfo | None:
        """Metadata of an asset `user` may read; None when it is missing or another user's private one."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.asset(asset_id))
            pipe.sismember(keys.asset_owners(asset_id), user or "")
            raw, owned = await pipe.execute()
        readable = not self.private or owned or raw.get(b"shared") == b"1"
        if not raw or not readable or not await asyncio.to_thread(self.path(asset_id).exists):
            return None
        return AssetInfo.model_validate({k.decode(): v.decode() for k, v in raw.items() if k != b"shared"})

    async def read(self, asset_id: str, user: str | None = None) -> bytes | None:
        """The bytes of an asset `user` may read, or None (as `info`)."""
        return None if await self.info(asset_id, user) is None else await self.bytes_of(asset_id)

    async def bytes_of(self, asset_id: str) -> bytes:
        """The bytes of an asset whose `info` the caller has read."""
        return await asyncio.to_thread(self.path(asset_id).read_bytes)


def _write_once(target: Path, data: bytes) -> None:
    """Writes content-addressed bytes unless present, by atomic rename (concurrent writers agree)."""
    if not target.exists():
        target.parent.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, target)
