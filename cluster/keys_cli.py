"""`montage keys create|list|revoke`: API keys in the Redis of REDIS_URL (default: the local `montage up` one)."""
from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from cluster.local import REDIS_PORT
from composition.store.access import AccessStore
from composition.store.webhooks import WebhookStore
from config.composition import AccessArgs
from config.settings import Settings


def redis_url() -> str:
    return Settings().redis_url or f"redis://127.0.0.1:{REDIS_PORT}/0"


async def _run(action: str, user: str | None, tier: str | None, key_id: str | None) -> int:
    client = aioredis.Redis.from_url(redis_url())
    store = AccessStore(client)
    try:
        if action == "create":
            if tier not in AccessArgs().tiers:
                print(f"unknown tier {tier!r}; the default tiers are {', '.join(AccessArgs().tiers)}")
                return 2
            key, record = await store.create_key(user, tier)
            print(f"key id {record.key_id} for user {record.user_id}, tier {record.tier}; its webhook signing secret "
                  f"and the key (each shown once):")
            print(record.webhook_secret)
            print(key)
        elif action == "webhook-secret":  # what signs webhooks with auth off
            print(await WebhookStore(client, 0).server_secret(Settings().webhook_secret))
        elif action == "list":
            for record in await store.list_keys():
                print(f"{record.key_id}  {record.user_id:<24} {record.tier:<10} {'revoked' if record.revoked else 'live'}")
        elif not await store.revoke(key_id):
            print(f"no key with id {key_id}")
            return 1
        else:
            print(f"revoked {key_id}")
        return 0
    finally:
        await client.aclose()


def main_keys(action: str, user: str | None = None, tier: str | None = None, key_id: str | None = None) -> int:
    return asyncio.run(_run(action, user, tier, key_id))
