"""Shared field types and response shapes."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="letters, digits, _ . -")]
AssetId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="an asset id from POST /v1/assets")]
Prompt = Annotated[str, Field(min_length=1, max_length=2000)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]


def wait_field(default: float) -> Any:
    return Field(default=default, ge=0, le=600, description="seconds to wait for the result before answering 202")


class Body(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")


class AssetRef(BaseModel):
    asset_id: str
    url: str


class Accepted(BaseModel):
    """202: the task runs on; poll `status_url` or stream `/events`."""

    task_id: str
    status: str
    status_url: str
