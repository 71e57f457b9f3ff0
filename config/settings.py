"""Process settings read from the environment."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where Redis and the asset store live. `REDIS_URL` unset means: start the embedded Redis."""

    model_config = SettingsConfigDict(env_prefix="MONTAGE_", extra="ignore")

    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "MONTAGE_REDIS_URL"))
    asset_dir: Path = Path("var/assets")
    data_dir: Path = Path("var")
    auth: Literal["off", "required"] = "off"
