"""Serve's model multiplexing keeps adapters warm: two real SDXL replicas, each holding one adapter set
(`max_loaded: 1`), three adapters; requests alternating between two adapters are routed to the replica that holds
theirs, so each loads once; a third adapter evicts one. Loads, hits and evictions as the replicas publish them."""
import asyncio

import pytest
import redis
from helpers import own_ray_serve  # noqa: F401 (its Ray)
from test_serving import options

from config.app import Autoscaling
from config.families import AdapterPolicy, SDXLArgs
from config.keys import adapter_replicas
from deployments.builder import bind
from deployments.families import SDXLDeployment
from models.adapter_files import write_demo
from models.sdxl import SDXL
from models.types import AdapterHolding, ImageRequest, Lora

# An app of its own on a Ray of its own, off the Ray lane (lanes.py)
pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group("adapter-routing")]
REDIS_DB = 11  # this module's own database
NAME = "AdapterSDXL"


def holdings(store: redis.Redis) -> list[AdapterHolding]:
    return [AdapterHolding.model_validate_json(entry) for entry in store.hgetall(adapter_replicas("sdxl")).values()]


def test_requests_go_to_the_replica_that_holds_their_adapter(ray_serve, store, tmp_path):
    unet = SDXL(SDXLArgs(adapters=AdapterPolicy(folder=tmp_path / "none", demo=False))).union.unet
    for seed, name in enumerate(("ink", "neon", "clay")):
        write_demo(tmp_path / f"{name}.safetensors", unet, "unet", seed)
    policy = AdapterPolicy(folder=tmp_path, max_loaded=1, max_per_request=1, demo=False)
    kwargs = store.connection_pool.connection_kwargs
    app = bind(SDXLDeployment, NAME, options(autoscaling=Autoscaling(min_replicas=2, max_replicas=2)),
               SDXLArgs(adapters=policy), f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}")
    handle = ray_serve.run(app, name=NAME, route_prefix=None)

    async def generate(name: str, seed: int):
        request = ImageRequest(prompt="a pier at night", width=64, height=64, steps=1, guidance=5.0, seed=seed,
                               loras=(Lora(id=name),))
        return await handle.options(multiplexed_model_id=name).generate.remote(request)

    async def scenario() -> dict[str, set[str]]:
        served: dict[str, set[str]] = {}
        for seed in range(5):
            for name in ("ink", "neon"):
                result = await generate(name, seed)
                served.setdefault(name, set()).add(result.metadata.replica)
        return served

    try:
        served = asyncio.run(scenario())
        warm = holdings(store)
        assert len(warm) == 2 and sorted(h.loaded for h in warm) == [["ink"], ["neon"]]
        assert sum(h.loads for h in warm) <= 3  # once each (one more if a request beat the routing update)
        assert sum(h.hits for h in warm) >= 7 and len(served["ink"] | served["neon"]) == 2
        asyncio.run(generate("clay", 9))
        after = holdings(store)
        assert sum(h.loads for h in after) == sum(h.loads for h in warm) + 1
        assert sum(h.evictions for h in after) == sum(h.evictions for h in warm) + 1
        assert sorted(name for h in after for name in h.loaded).count("clay") == 1
    finally:
        ray_serve.delete(NAME)
