"""LoRA adapters: what each image family offers and which replicas hold what."""
from __future__ import annotations

from pydantic import BaseModel, Field

from models.types import AdapterHolding, AdapterInfo


class AdapterOut(AdapterInfo):
    replicas: list[str] = Field(description="replicas holding it loaded now")


class FamilyAdapters(BaseModel):
    family: str
    max_per_request: int
    adapters: list[AdapterOut]
    replicas: list[AdapterHolding] = Field(description="each live replica's adapters and its load, hit, eviction counts")


class AdaptersOut(BaseModel):
    families: list[FamilyAdapters]
