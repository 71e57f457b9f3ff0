"""A replica's LoRA adapters in Serve: adapter sets multiplexed over the family's replicas (`@serve.multiplexed`:
a request goes to a replica that holds its set; each replica keeps `max_loaded` sets, least recently used out),
the catalogue and holdings published to Redis, uploaded adapters fetched from the asset store when a request names
one, and load, hit and eviction counts as metrics."""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from ray import serve

from deployments.metrics import deployment_metrics
from models.adapter_bank import AdapterBank
from models.types import AdapterHolding, AdapterInfo, adapter_key
from records.adapters import AdapterRecords
from records.blobs import Blobs

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
    checks, `observe()` after each model call; uploads' bytes come from `blobs`, the asset store."""

    def __init__(self, bank: AdapterBank, records: AdapterRecords, replica: str, blobs: Blobs) -> None:
        self.bank, self.records, self.replica, self.blobs = bank, records, replica, blobs
        self._counted: Counter[str] = Counter()

        async def lease(key: str) -> AdapterLease:
            return AdapterLease(bank, key)

        self._lease = serve.multiplexed(max_num_models_per_replica=bank.policy.max_loaded)(lease)

    async def hold(self, request: Any) -> None:
        """Fetches the request's uploaded adapters and enters its adapter set into Serve's LRU, when the request came
        routed by it (its handle call named the set as its multiplexed model id); the bank loads the adapters when
        the request runs."""
        if request.loras:
            await self.fetch([lora.id for lora in request.loras])
        if request.loras and serve.get_multiplexed_model_id() == adapter_key(request.loras):
            await self._lease(adapter_key(request.loras))

    async def fetch(self, ids: list[str]) -> None:
        """The bytes of the uploaded adapters among `ids` that this replica lacks, or has an older upload of, from
        the asset store: an upload is usable on the next request, on every replica. A deleted one is forgotten."""
        wanted = [name for name in ids if not self.bank.local(name)]
        found = await asyncio.to_thread(self.records.uploads, self.bank.family, wanted) if wanted else None
        if found is None:  # none uploaded, or Redis unreachable: what the replica has
            return
        self.bank.drop_uploads([name for name in wanted if name not in found])
        for name, entry in found.items():
            info = AdapterInfo.model_validate_json(entry)
            if self.bank.upload_digest(name) != info.digest:
                self.bank.take_upload(name, info.digest, await self.blobs.get(info.blob))

    async def check(self, adapter_id: str, data: bytes) -> AdapterInfo:
        """The catalogue entry an adapter file's bytes would have, checked against this replica's model."""
        return await asyncio.to_thread(self.bank.check, adapter_id, data)

    def publish(self) -> None:
        """Writes the folder's catalogue and this replica's holding; forgets the uploads deleted since."""
        if (uploads := self.records.uploads(self.bank.family)) is not None:
            self.bank.drop_uploads([name for name in self.bank.uploaded if name not in uploads])
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
