"""Auth, tiers, quotas, rate limits and lanes: the real app code in-process (ASGI) over the session's real
deployments and Redis with auth required; the lane order on a real runner."""
import asyncio
import time

import httpx
import pytest
import redis.asyncio as aioredis

from composition.api import create_api
from composition.runner import TaskRunner
from composition.services import build_services
from composition.workflows.registry import build_workflows
from config.app import AppArgs
from config.composition import AccessArgs, CompositionArgs, RunnerArgs, TierArgs

TIERS = {"tight": TierArgs(lane="low", daily={"images": 7}, rate_per_s=1000, burst=1000),
         "slow": TierArgs(lane="normal", rate_per_s=0.5, burst=2),
         "pro": TierArgs(lane="high", rate_per_s=1000, burst=1000)}
FAMILIES = {"llm": "PromptLLM", "sdxl": "SDXL", "flux": "Flux", "svd": "SVD", "wan": "Wan", "embedder": "Embedder"}


def services_for(redis_url: str, asset_dir, auth: str = "required"):
    from ray import serve

    handles = {key: serve.get_deployment_handle(name, "montage") for key, name in FAMILIES.items()}
    defaults = {key: family.args.defaults for key, family in AppArgs().families().items()}
    args = CompositionArgs(asset_dir=asset_dir, access=AccessArgs(auth=auth, tiers=TIERS))
    return build_services(args, redis_url, handles, defaults)


def scenario(redis_url: str, asset_dir, steps):
    """Runs `steps(client, services)` in one event loop against the app, in-process, with auth required."""
    async def run():
        services = services_for(redis_url, asset_dir)
        transport = httpx.ASGITransport(app=create_api(services, build_workflows(services)))
        async with httpx.AsyncClient(transport=transport, base_url="http://montage") as client:
            return await steps(client, services)
    return asyncio.run(run())


@pytest.fixture
def secured(montage, redis_url):
    _, asset_dir = montage
    return lambda steps: scenario(redis_url, asset_dir, steps)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_auth_required_needs_a_live_key_except_on_public_routes(secured):
    async def steps(client, services):
        key, _ = await services.access.create_key("ivy", "pro")
        out = {"none": await client.get("/v1/styles"),
               "bad": await client.get("/v1/styles", headers=bearer("mtg_nope")),
               "good": await client.get("/v1/styles", headers=bearer(key))}
        for path in ("/healthz", "/openapi.json", "/docs"):
            out[path] = await client.get(path)
        return out

    out = secured(steps)
    assert out["none"].status_code == out["bad"].status_code == 401
    assert out["none"].json()["error"]["field"] == "authorization"
    assert out["none"].headers["www-authenticate"] == "Bearer"
    assert out["good"].status_code == 200
    assert all(out[path].status_code == 200 for path in ("/healthz", "/openapi.json", "/docs"))


def test_auth_off_by_default(client):
    assert client.get("/v1/styles").status_code == 200


def test_revoked_key_is_refused(secured):
    async def steps(client, services):
        key, record = await services.access.create_key("jon", "pro")
        before = await client.get("/v1/styles", headers=bearer(key))
        assert await services.access.revoke(record.key_id)
        return before, await client.get("/v1/styles", headers=bearer(key))

    before, after = secured(steps)
    assert before.status_code == 200 and after.status_code == 401


def test_quota_is_exact_under_50_parallel_requests(secured):
    async def steps(client, services):
        key, _ = await services.access.create_key(f"kim-{time.time_ns()}", "tight")
        return await asyncio.gather(*(client.post("/v1/images/generations", headers=bearer(key), json={
            "prompt": f"a lighthouse number {i} in a storm", "seed": i, "wait_s": 0}) for i in range(50)))

    responses = secured(steps)
    codes = [r.status_code for r in responses]
    assert codes.count(202) + codes.count(200) == 7 and codes.count(429) == 43, codes
    refused = next(r for r in responses if r.status_code == 429).json()["error"]
    assert refused["code"] == "quota_exceeded" and refused["field"] == "images" and "7" in refused["message"]


def test_rate_limit_answers_429_with_retry_after(secured):
    async def steps(client, services):
        key, _ = await services.access.create_key(f"lou-{time.time_ns()}", "slow")
        return [await client.get("/v1/styles", headers=bearer(key)) for _ in range(3)]

    responses = secured(steps)
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert int(responses[2].headers["Retry-After"]) >= 1
    assert responses[2].json()["error"]["code"] == "rate_limited"


def test_keys_cli_prints_the_key_last(redis_url, capsys, monkeypatch):
    from cluster.cli import main
    from composition.store.access import AccessStore

    def lookup(key):
        async def run():
            client = aioredis.Redis.from_url(redis_url)
            try:
                return await AccessStore(client).lookup(key)
            finally:
                await client.aclose()
        return asyncio.run(run())

    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["keys", "create", "--user", "mo", "--tier", "pro"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    record = lookup(key)
    assert record.user_id == "mo" and record.tier == "pro"
    assert main(["keys", "list"]) == 0 and record.key_id in capsys.readouterr().out
    assert main(["keys", "revoke", record.key_id]) == 0
    assert lookup(key) is None


def test_a_high_lane_task_starts_before_earlier_low_lane_tasks(montage, redis_url):
    """A runner of concurrency 1 on its own Redis database: 10 low-lane tasks, then 1 high-lane task."""
    _, asset_dir = montage
    lane_url = redis_url.rsplit("/", 1)[0] + "/1"

    async def run():
        services = services_for(lane_url, asset_dir, auth="off")
        await aioredis.Redis.from_url(lane_url).flushdb()
        body = {"prompt": "a quiet harbour", "mode": "general", "target": "image", "wait_s": 0}
        low = [(await services.tasks.create("prompt", body, lane="low"))[0] for _ in range(10)]
        high, _ = await services.tasks.create("prompt", body, lane="high")
        runner = TaskRunner(services, build_workflows(services).by_kind(), RunnerArgs(concurrency=1, block_ms=50))
        loop = asyncio.create_task(runner.run())
        for task_id in [*low, high]:
            while not (await services.tasks.get(task_id)).terminal:
                await asyncio.sleep(0.05)
        loop.cancel()
        return [await services.tasks.get(t) for t in low], await services.tasks.get(high)

    low, high = asyncio.run(run())
    assert all(task.status == "succeeded" for task in [*low, high])
    started_later = sum(task.started_at > high.started_at for task in low)
    assert started_later >= 8, [t.started_at for t in low]


def test_with_auth_a_user_cannot_see_another_users_tasks_or_projects(secured):
    async def steps(client, services):
        ana, _ = await services.access.create_key(f"ana-{time.time_ns()}", "pro")
        ben, _ = await services.access.create_key(f"ben-{time.time_ns()}", "pro")
        task = await client.post("/v1/prompts/optimize", headers=bearer(ana), json={"prompt": "a fjord", "wait_s": 30})
        project = await client.post("/v1/projects", headers=bearer(ana), json={"name": "ana's"})
        task_id, project_id = task.headers["X-Task-Id"], project.json()["id"]
        return {"own": await client.get(f"/v1/tasks/{task_id}", headers=bearer(ana)),
                "other": await client.get(f"/v1/tasks/{task_id}", headers=bearer(ben)),
                "cancel": await client.delete(f"/v1/tasks/{task_id}", headers=bearer(ben)),
                "list": await client.get("/v1/tasks", headers=bearer(ben), params={"user_id": "anyone"}),
                "project": await client.get(f"/v1/projects/{project_id}", headers=bearer(ben)),
                "export": await client.get(f"/v1/projects/{project_id}/export", headers=bearer(ben)),
                "own_project": await client.get(f"/v1/projects/{project_id}", headers=bearer(ana))}

    out = secured(steps)
    assert out["own"].status_code == 200 and out["own_project"].status_code == 200
    assert out["other"].status_code == out["cancel"].status_code == 404
    assert out["project"].status_code == out["export"].status_code == 404
    assert out["list"].json()["tasks"] == []
