"""LoRA adapter catalogues and holdings, written by the image replicas for the ingress (`GET /v1/adapters`, request
checks): each family's catalogue as its replicas found it, and what each replica holds, for as long as it lives."""
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
