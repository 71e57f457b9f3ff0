"""Process settings read from the environment, and how every Redis client reconnects."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.composition import OBJECT_STORE_URL, WEBHOOK_SECRET

if TYPE_CHECKING:  # imported where a client is made: the models (and the GPU bench) read settings without redis
    from redis.backoff import ExponentialWithJitterBackoff


class Settings(BaseSettings):
    """Where Redis and the asset store live. `REDIS_URL` unset means: start the embedded Redis; `MONTAGE_ASSET_URL`
    (an object store) takes the assets' bytes out of `MONTAGE_ASSET_DIR`."""

    model_config = SettingsConfigDict(env_prefix="MONTAGE_", extra="ignore")

    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "MONTAGE_REDIS_URL"))
    asset_dir: Path = Path("var/assets")
    asset_url: str | None = Field(default=None, pattern=OBJECT_STORE_URL)
    data_dir: Path = Path("var")
    auth: Literal["off", "required"] = "off"
    webhook_secret: str | None = Field(default=None, pattern=WEBHOOK_SECRET, repr=False)


def store_backoff() -> ExponentialWithJitterBackoff:
    """Backoff between a Redis client's retries, each on a new connection: after a Redis restart every pooled
    connection is stale and fails once (redis-py's `from_url` clients retry 0 times unless given one)."""
    from redis.backoff import ExponentialWithJitterBackoff

    return ExponentialWithJitterBackoff(base=0.05, cap=0.5)
