"""A replica's LoRA adapters in Serve: adapter sets multiplexed over the family's replicas (`@serve.multiplexed`:
a request goes to a replica that holds its set; each replica keeps `max_loaded` sets, least recently used out),
the catalogue and holdings published to Redis, and load, hit and eviction counts as metrics."""
from __future__ import annotations

from collections import Counter
from typing import Any

from ray import serve

from deployments.metrics import deployment_metrics
from models.adapters import AdapterBank
from models.types import AdapterHolding, adapter_key
from records.adapters import AdapterRecords

HOLDING_TTL_S = 60  # a replica's holding outlives it by at most this (health checks rewrite it every few seconds)


class AdapterLease:
    """One adapter set in Serve's multiplexing LRU; Serve evicting it (or its collection) releases its adapters."""

    def __init__(self, bank: AdapterBank, key: str) -> None:
        self.bank, self.ids, self.released = bank, key.split("+"), False

    def __del__(self) -> None:
        if not self.released:
            self.released = True
            self.bank.release(self.ids)


class AdapterHosting:
    """The adapters of one replica's model: `hold(request)` before a request queues, `publish()` from health
    checks, `observe()` after each model call."""

    def __init__(self, bank: AdapterBank, records: AdapterRecords, replica: str) -> None:
        self.bank, self.records, self.replica = bank, records, replica
        self._counted: Counter[str] = Counter()

        async def lease(key: str) -> AdapterLease:
            return AdapterLease(bank, key)

        self._lease = serve.multiplexed(max_num_models_per_replica=bank.policy.max_loaded)(lease)

    async def hold(self, request: Any) -> None:
        """Enters the request's adapter set into Serve's LRU, when the request came routed by it (its handle call
        named the set as its multiplexed model id); the bank loads the adapters when the request runs."""
        if request.loras and serve.get_multiplexed_model_id() == adapter_key(request.loras):
            await self._lease(adapter_key(request.loras))

    def publish(self) -> None:
        catalogue = {name: info.model_dump_json() for name, info in self.bank.catalogue().items()}
        holding = AdapterHolding(replica=self.replica, loaded=self.bank.loaded, **self.bank.counts)
        self.records.publish(self.bank.family, catalogue, self.replica, holding.model_dump_json(), HOLDING_TTL_S)

    def observe(self) -> None:
        """Adds the bank's new loads, hits and evictions to the metrics, and publishes them when any changed."""
        new = self.bank.counts - self._counted
        if not new:
            return
        counter = deployment_metrics().adapter_events
        for event, count in new.items():
            counter.inc(count, {"deployment": self.bank.family, "event": event})
        self._counted.update(new)
        self.publish()
