"""A tiny SDXL replica in-process on its own Redis database (the module's `REDIS_DB`), for the step tests."""
from __future__ import annotations

import pytest
import redis

from config.families import SDXLArgs, StepPolicy
from deployments.families import SDXLDeployment


@pytest.fixture(scope="module")
def store(redis_url, request):
    client = redis.Redis.from_url(f"{redis_url.rsplit('/', 1)[0]}/{request.module.REDIS_DB}")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="module")
def replica(store) -> SDXLDeployment:
    kwargs = store.connection_pool.connection_kwargs
    deployment = SDXLDeployment(SDXLArgs(), f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}")
    deployment.policy = StepPolicy(preview_every=0)
    return deployment
