"""Webhook subscriptions and deliveries in Redis: subscribing a task, leasing due deliveries to a sender, recording
each attempt, listing a task's deliveries, and the server's signing secret. Deliveries themselves are made by the
task record's scripts (`records.webhooks`), atomically with the events they report."""
from __future__ import annotations

import time
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel

from composition.store.access import new_webhook_secret
from config import keys
from records.webhooks import SUBSCRIBE, Subscription, WebhookEvent, subscribe_args

DeliveryStatus = Literal["pending", "delivered", "failed"]

_LEASE = """
-- KEYS: due; ARGV: now, lease end, count. Due deliveries, each moved to the lease's end: a sender that dies with
-- it leaves it due again then.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""

_RECORD = """
-- KEYS: delivery, due; ARGV: outcome (delivered | retry | failed), HTTP status ('' when none), error, now,
-- next attempt time, ttl. Only a pending delivery changes; a finished one leaves the due set and expires.
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_status', ARGV[2], 'last_error', ARGV[3], 'last_attempt_at', ARGV[4])
local id = redis.call('HGET', KEYS[1], 'id')
if ARGV[1] == 'retry' then
  redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[5], id)
else
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'next_attempt_at', '')
  redis.call('ZREM', KEYS[2], id)
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
return 1
"""


class Delivery(BaseModel):
    """One event on its way to one subscription: what was sent and how its attempts went."""

    id: str
    task_id: str
    subscription: str
    url: str
    key: str = ""
    event: str
    data: str
    created_at: float
    status: DeliveryStatus
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Delivery:
        return cls.model_validate({k.decode(): v.decode() or None for k, v in raw.items()} | {
            "key": raw.get(b"key", b"").decode()})


class DeliveryOut(BaseModel):
    """A delivery as the task lists it."""

    id: str
    event: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None


class WebhookOut(BaseModel):
    """A task's webhook: where it goes, the events it wants, the deliveries made so far."""

    url: str
    events: list[WebhookEvent]
    deliveries: list[DeliveryOut]


class WebhookStore:
    def __init__(self, client: aioredis.Redis, task_ttl_s: int) -> None:
        self.client = client
        self.task_ttl_s = task_ttl_s
        self._subscribe = client.register_script(SUBSCRIBE)
        self._lease = client.register_script(_LEASE)
        self._record = client.register_script(_RECORD)

    async def subscribe(self, task_id: str, subscription: Subscription) -> None:
        """The task's events go to `subscription` from now on (its end at once if it has ended); idempotent."""
        await self._subscribe(**subscribe_args(task_id, subscription, time.time(), self.task_ttl_s))

    async def lease(self, count: int, lease_s: float) -> list[Delivery]:
        """Up to `count` due deliveries, leased for `lease_s`."""
        now = time.time()
        ids = await self._lease(keys=[keys.webhooks_due()], args=[now, now + lease_s, count])
        pipe = self.client.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hgetall(keys.webhook(delivery_id.decode()))
        found = await pipe.execute()
        gone = [delivery_id for delivery_id, raw in zip(ids, found, strict=True) if not raw]
        if gone:  # expired with its task: nothing left to send
            await self.client.zrem(keys.webhooks_due(), *gone)
        return [Delivery.from_hash(raw) for raw in found if raw]

    async def record(self, delivery: Delivery, outcome: Literal["delivered", "retry", "failed"],
                     http_status: int | None, error: str | None, next_at: float | None = None) -> None:
        """One attempt's outcome; a delivered or failed delivery is kept as long as a finished task."""
        await self._record(keys=[keys.webhook(delivery.id), keys.webhooks_due()],
                           args=[outcome, http_status or "", error or "", time.time(), next_at or "",
                                 self.task_ttl_s])

    async def listed(self, task_id: str, user_id: str | None) -> list[WebhookOut]:
        """The task's webhooks with their deliveries; with a user, only that user's."""
        subscriptions = {sid.decode(): Subscription.model_validate_json(raw)
                         for sid, raw in (await self.client.hgetall(keys.task_webhooks(task_id))).items()}
        ids = await self.client.lrange(keys.task_deliveries(task_id), 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hgetall(keys.webhook(delivery_id.decode()))
        deliveries = [Delivery.from_hash(raw) for raw in await pipe.execute() if raw]
        return [WebhookOut(url=sub.url, events=sub.events, deliveries=[
                    DeliveryOut.model_validate(d.model_dump()) for d in deliveries if d.subscription == sid])
                for sid, sub in subscriptions.items() if user_id is None or sub.user_id == user_id]

    async def server_secret(self, configured: str | None = None) -> str:
        """The server's signing secret (auth off): `configured`, else one generated once and kept in Redis."""
        if configured:
            return configured
        await self.client.set(keys.webhook_secret(), new_webhook_secret(), nx=True)
        return (await self.client.get(keys.webhook_secret())).decode()
