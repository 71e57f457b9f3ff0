"""Approximate reuse: a new prompt near an earlier one of its scope starts from that prompt's kept latent at the step
its similarity maps to, never across scopes or hard negatives; `reuse: false` renders as before; the latent library
stays within its cap. GPU-seconds: accounted per task and user, a spent daily quota is a 429."""
import asyncio
import time

import httpx
import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from helpers import pixels
from secured import bearer, services_for

from composition.api import create_api
from composition.store.reuse import LatentLibrary
from composition.workflows.registry import build_workflows
from config import keys
from config.composition import DedupArgs, ReuseArgs
from models.types import ImageRequest


def test_a_near_duplicate_starts_at_the_mapped_step_and_others_never_reuse(montage, redis_url):
    """Merges off (threshold 1), every non-conflicting neighbour reusable and mapped to 40 % of 5 steps (step 2)."""
    run = time.time_ns()
    style = f"reuse{run}"  # a scope of this test's own
    store = redis.Redis.from_url(redis_url)

    async def steps():
        services = services_for(redis_url, montage[1], auth="off", dedup=DedupArgs(threshold=1.0),
                                reuse=ReuseArgs(min_similarity=0.0, mapping=[{"similarity": 0.0, "fraction": 0.4}]))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(services, build_workflows(services))),
                                     base_url="http://montage", timeout=120) as http:
            async def post(prompt: str, seed: int, **body) -> dict:
                answer = await http.post("/v1/images/generations", json={
                    "prompt": f"{prompt}, run {run}", "seed": seed, "steps": 5, "style": style, "wait_s": 120} | body)
                assert answer.status_code == 200, answer.text
                return answer.json() | {"task_id": answer.headers["X-Task-Id"]}

            first = await post("a stone lighthouse on a cliff", 1)
            near = await post("a stone lighthouse on a high cliff", 2)
            negative = await post("a red stone lighthouse on a cliff", 3)
            elsewhere = await post("a stone lighthouse on a tall cliff", 4, style=style + "b")
            off = await post("a stone lighthouse on a tall cliff", 5, reuse=False)
            flux = [await post(prompt, 6, model="flux") for prompt in ("a glass greenhouse in a garden",
                                                                         "a glass greenhouse in a large garden")]
            guidance = services.defaults_of("sdxl").guidance
            direct = await services.handles["sdxl"].generate.remote(ImageRequest(
                prompt=off["prompt_used"], width=64, height=64, steps=5, guidance=guidance, seed=5))
            library = await services.library.usage("sdxl")
            stored = await services.assets.bytes_of(off["images"][0]["asset_id"])
            return first, near, negative, elsewhere, off, (direct, stored), library, flux

    first, near, negative, elsewhere, off, (direct, stored), library, flux = asyncio.run(steps())
    assert "reused" not in first["images"][0]["metadata"]
    [image] = near["images"]
    assert image["metadata"]["reused"] == {"from_prompt_key": first["prompt_key"], "from_step": 2, "steps_skipped": 2}
    assert image["metadata"]["resumed_from_step"] == 2
    assert sorted(store.hkeys(keys.task_kept(near["task_id"]))) == [b"2:3", b"2:4"]  # steps 3-5 alone ran
    assert sorted(store.hkeys(keys.reuse_entry("sdxl", first["prompt_key"]))) == [b"1", b"2", b"3", b"4"]
    for result in (negative, elsewhere, off):
        assert "reused" not in result["images"][0]["metadata"]
        assert result["images"][0]["metadata"]["resumed_from_step"] is None
        assert len(store.hkeys(keys.task_kept(result["task_id"]))) == 4
    assert np.array_equal(pixels(stored), pixels(direct.png))  # as before reuse existed (the stored one is signed)
    assert library[0] >= 4 and library[1] > 0
    assert flux[1]["images"][0]["metadata"]["reused"] == {"from_prompt_key": flux[0]["prompt_key"], "from_step": 2,
                                                          "steps_skipped": 2}


def test_the_library_stays_within_its_cap_least_recently_used_out_first(redis_url):
    """Entries of 40 KiB into a 100 KiB library: at most two stay; a take keeps an entry in, an evicted one is gone."""
    run = time.time_ns()
    family = f"cap{run}"

    async def steps():
        client = aioredis.from_url(redis_url)
        library = LatentLibrary(client, ReuseArgs(max_mb=100 / 1024))
        usage, took = [], []
        try:
            for index in range(8):
                task_id = f"{run:x}{index}"
                await client.hset(keys.task(task_id), "status", "succeeded")
                await client.hset(keys.task_kept(task_id), mapping={keys.kept_field(7, step): bytes([index]) * 10240
                                                                     for step in (1, 2, 3, 4)})
                await library.add(family, f"p{index}", task_id, 7)
                took.append(await library.take(family, "p0", 3))
                usage.append(await library.usage(family))
            return usage, took, await library.take(family, "p6", 3), await library.take(family, "p7", 9)
        finally:
            await client.aclose()

    usage, took, evicted, kept = asyncio.run(steps())
    assert all(total <= 100 * 1024 for _, total in usage)
    assert usage[-1] == (2, 2 * 40 * 1024)
    assert all(found == (3, bytes([0]) * 10240) for found in took)  # taken at every step: never the LRU one
    assert evicted is None and kept == (4, bytes([7]) * 10240)


def test_gpu_seconds_reach_the_task_record_and_a_spent_daily_quota_is_a_429(secured):
    """A tier with a tiny daily `gpu_seconds`: its first generation runs and accounts its device seconds (result
    metadata, task record with its tier, the user's day), the next request is refused naming the quota."""
    user = f"meg-{time.time_ns()}"

    async def steps(client, services):
        key, _ = await services.access.create_key(user, "metered")
        first = await client.post("/v1/images/generations", headers=bearer(key), json={
            "prompt": f"a brass compass on a map, {user}", "steps": 3, "seed": 1, "wait_s": 120})
        record = await services.tasks.get(first.headers["X-Task-Id"])
        spent = await services.access.gpu_seconds_spent(user)
        second = await client.post("/v1/images/generations", headers=bearer(key), json={
            "prompt": f"a brass compass on a chart, {user}", "wait_s": 0})
        return first, record, spent, second

    first, record, spent, second = secured(steps)
    assert first.status_code == 200
    seconds = first.json()["images"][0]["metadata"]["gpu_seconds"]
    assert seconds > 0 and record.gpu_seconds == pytest.approx(seconds) and spent == pytest.approx(seconds)
    assert record.tier == "metered"  # the task's tier: the montage_gpu_seconds counter's label
    assert second.status_code == 429
    assert second.json()["error"]["field"] == "gpu_seconds" and "gpu_seconds" in second.json()["error"]["message"]
