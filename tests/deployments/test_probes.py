"""A diffusion replica's health probe runs each of its operations once: in-process, on its own Redis database."""
from __future__ import annotations

import asyncio

from config.families import FluxArgs
from deployments.families import FluxDeployment

REDIS_DB = 12  # this module's own database


def test_the_flux_probe_generates_and_edits(store):
    kwargs = store.connection_pool.connection_kwargs
    replica = FluxDeployment(FluxArgs(), f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}")
    answer = asyncio.run(replica.probe())
    assert answer["replica"] == replica.replica and answer["ms"] > 0
