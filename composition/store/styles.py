"""Style profiles by soul id, as JSON."""
from __future__ import annotations

from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from config import keys
from config.families import MAX_LORAS
from config.specs import families_with
from models.types import Lora, Side


class Style(BaseModel):
    """What a soul looks like and how it is drawn; prompts of souls and selfies start from it."""

    name: str = Field(default="", max_length=100)
    prompt: str = Field(min_length=1, max_length=1000, description="look and art style, e.g. 'a red-haired sailor, ink'")
    negative_prompt: str = Field(default="", max_length=1000)
    model: Literal[families_with("generate")] = "flux"
    width: Side | None = None
    height: Side | None = None
    steps: int | None = Field(default=None, ge=1, le=100)
    loras: list[Lora] = Field(default=[], max_length=MAX_LORAS,
                              description="LoRA adapters of its model, with their scales")


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
