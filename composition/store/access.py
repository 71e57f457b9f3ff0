"""API keys (stored hashed), the web page's sessions (each standing for a key), daily quotas and token-bucket rate
limits; every check is one atomic script."""
from __future__ import annotations

import base64
import hashlib
import math
import secrets
import time
from datetime import UTC, datetime

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from config import keys

KEY_PREFIX = "mtg_"

GPU_SECONDS = "gpu_seconds"  # the quota key kind of the device seconds a user used today

_QUOTA = """
-- KEYS: counter; ARGV: limit, ttl. Counts one more unless that would pass the limit: 1 taken, 0 refused.
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

_BUCKET = """
-- KEYS: bucket; ARGV: rate per s, burst, now. Returns 0 when a token was taken, else ms until the next one.
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1] or burst)
local at = tonumber(state[2] or now)
tokens = math.min(burst, tokens + (now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return wait
"""

_CLOSE = """
-- KEYS: session; ARGV: key digest. Deletes the session only if it stands for that key: 1 closed, 0 not.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ApiKey(BaseModel):
    key_id: str
    user_id: str
    tier: str
    created_at: float
    revoked: bool = False
    webhook_secret: str | None = Field(default=None, repr=False, description="signs the key's webhook deliveries")


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class AccessStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._quota = client.register_script(_QUOTA)
        self._bucket = client.register_script(_BUCKET)
        self._close = client.register_script(_CLOSE)

    async def create_key(self, user_id: str, tier: str) -> tuple[str, ApiKey]:
        """A new random key (shown once) and its record, with the secret that signs its webhooks (shown once too);
        of the key only its sha256 is stored."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = key_digest(key)
        record = ApiKey(key_id=digest[:16], user_id=user_id, tier=tier, created_at=time.time(),
                        webhook_secret=new_webhook_secret())
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.api_key(digest), mapping={**record.model_dump(), "revoked": 0})
        pipe.zadd(keys.api_keys(), {digest: record.created_at})
        await pipe.execute()
        return key, record

    async def lookup(self, key: str) -> ApiKey | None:
        """The record of a live key, or None for an unknown or revoked one."""
        return await self.record(key_digest(key))

    async def record(self, digest: str) -> ApiKey | None:
        """The record of the live key whose sha256 is `digest`, or None for an unknown or revoked one."""
        raw = await self.client.hgetall(keys.api_key(digest))
        if not raw:
            return None
        record = ApiKey.model_validate({k.decode(): v.decode() for k, v in raw.items()})
        return None if record.revoked else record

    async def open_session(self, digest: str, ttl_s: int) -> str:
        """A new session token standing for the key whose sha256 is `digest` for `ttl_s`; only its sha256 is stored."""
        token = secrets.token_urlsafe(32)
        await self.client.set(keys.session(key_digest(token)), digest, ex=ttl_s)
        return token

    async def session(self, token: str) -> str | None:
        """The sha256 of the key a live session stands for; None for an unknown, expired or closed one."""
        found = await self.client.get(keys.session(key_digest(token)))
        return found.decode() if found else None

    async def close_session(self, token: str, digest: str) -> bool:
        """Ends the session `token` if it stands for the key `digest`."""
        return bool(await self._close(keys=[keys.session(key_digest(token))], args=[digest]))

    async def webhook_secret(self, digest: str) -> str | None:
        """The webhook signing secret of the key whose sha256 is `digest`."""
        found = await self.client.hget(keys.api_key(digest), "webhook_secret")
        return found.decode() if found else None

    async def list_keys(self) -> list[ApiKey]:
        digests = await self.client.zrange(keys.api_keys(), 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for digest in digests:
            pipe.hgetall(keys.api_key(digest.decode()))
        return [ApiKey.model_validate({k.decode(): v.decode() for k, v in raw.items()})
                for raw in await pipe.execute() if raw]

    async def revoke(self, key_id: str) -> bool:
        for digest in await self.client.zrange(keys.api_keys(), 0, -1):
            if digest.decode().startswith(key_id):
                await self.client.hset(keys.api_key(digest.decode()), "revoked", 1)
                return True
        return False

    async def spend_gpu_seconds(self, user_id: str, seconds: float) -> None:
        """Adds to the user's device seconds of today (`TierArgs.daily_gpu_seconds`)."""
        key = keys.quota(user_id, GPU_SECONDS, datetime.now(UTC).strftime("%Y%m%d"))
        pipe = self.client.pipeline(transaction=True)
        pipe.incrbyfloat(key, seconds)
        pipe.expire(key, 2 * 86_400)
        await pipe.execute()

    async def gpu_seconds_spent(self, user_id: str) -> float:
        return float(await self.client.get(keys.quota(user_id, GPU_SECONDS, datetime.now(UTC).strftime("%Y%m%d")))
                     or 0.0)

    async def take_quota(self, user_id: str, kind: str, limit: int) -> bool:
        day = datetime.now(UTC).strftime("%Y%m%d")
        return bool(await self._quota(keys=[keys.quota(user_id, kind, day)], args=[limit, 2 * 86_400]))

    async def take_token(self, user_id: str, rate_per_s: float, burst: int) -> float:
        """0 when the request may pass, else the seconds to wait (for `Retry-After`)."""
        wait_ms = int(await self._bucket(keys=[keys.rate(user_id)], args=[rate_per_s, burst, time.time()]))
        return math.ceil(wait_ms / 1000) if wait_ms else 0
