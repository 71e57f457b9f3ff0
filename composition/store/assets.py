"""Assets: content-addressed files on disk, metadata in Redis. Clients name assets by id, never by path."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
from pydantic import BaseModel

from composition.errors import ApiError, not_found
from config import keys

ASSET_ID = re.compile(r"^[0-9a-f]{32}$")


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
        return f"/v1/assets/{self.id}"

    def ref(self) -> dict[str, str]:
        return {"asset_id": self.id, "url": self.url}


def check_asset_id(asset_id: str, field: str = "asset_id") -> str:
    if not isinstance(asset_id, str) or not ASSET_ID.match(asset_id):
        raise ApiError(422, "invalid_request", f"{field}: not an asset id (32 hex characters)", field)
    return asset_id


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
        check_asset_id(asset_id)
        return self.root / asset_id[:2] / asset_id

    async def put(self, data: bytes, content_type: str, kind: str, owner: str = "",
                  size: tuple[int, int] | None = None, shared: bool = False) -> AssetInfo:
        asset_id = hashlib.sha256(data).hexdigest()[:32]
        target = self.path(asset_id)
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
                handle.write(data)
            os.replace(handle.name, target)
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

    async def info(self, asset_id: str, field: str = "asset_id", user: str | None = None) -> AssetInfo:
        """Metadata of an asset `user` may read, or a 404 naming `field` (also for another user's private one)."""
        check_asset_id(asset_id, field)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.asset(asset_id))
            pipe.sismember(keys.asset_owners(asset_id), user or "")
            raw, owned = await pipe.execute()
        readable = not self.private or owned or raw.get(b"shared") == b"1"
        if not raw or not readable or not self.path(asset_id).exists():
            raise not_found(f"asset {asset_id}", field)
        return AssetInfo.model_validate({k.decode(): v.decode() for k, v in raw.items() if k != b"shared"})

    async def read(self, asset_id: str, field: str = "asset_id", user: str | None = None) -> bytes:
        await self.info(asset_id, field, user)
        return self.path(asset_id).read_bytes()
