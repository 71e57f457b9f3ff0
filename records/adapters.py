"""LoRA adapter catalogues and holdings, written by the image replicas for the ingress (`GET /v1/adapters`, request
checks): each family's catalogue as its replicas found it, and what each replica holds, for as long as it lives; and
the adapters uploaded over HTTP, which the ingress records and the replicas read."""
from __future__ import annotations

import logging

import redis

from config import keys

log = logging.getLogger("montage.adapters")


class AdapterRecords:
    """A replica's writes (best effort: Redis may be restarting; the next health check writes again)."""

    def __init__(self, client: redis.Redis | None) -> None:
        self.client = client

    def publish(self, family: str, catalogue: dict[str, str], replica: str, holding: str, ttl_s: int) -> None:
        """Replaces the family's catalogue (adapter id → entry JSON) and sets this replica's holding for `ttl_s`."""
        if self.client is None:
            return
        try:
            pipe = self.client.pipeline()
            pipe.delete(keys.adapters(family))
            if catalogue:
                pipe.hset(keys.adapters(family), mapping=catalogue)
            pipe.hset(keys.adapter_replicas(family), replica, holding)
            pipe.hexpire(keys.adapter_replicas(family), ttl_s, replica)
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("adapters of %s not published: %s", family, error)

    def uploads(self, family: str, ids: list[str] | None = None) -> dict[str, str] | None:
        """Uploaded adapters (id → entry JSON): those of `ids` that exist, or all; None while Redis is unreachable."""
        if self.client is None:
            return {}
        try:
            if ids is None:
                found = self.client.hgetall(keys.adapter_uploads(family))
            else:
                found = dict(zip(ids, self.client.hmget(keys.adapter_uploads(family), ids), strict=True))
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("uploaded adapters of %s not read: %s", family, error)
            return None
        return {_text(name): entry.decode() for name, entry in found.items() if entry is not None}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
