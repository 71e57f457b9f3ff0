"""Auth, tiers, quotas, rate limits and lanes: the real app code in-process (ASGI) over the session's real
deployments and Redis with auth required; the lane order on a real runner."""
import asyncio
import time

import redis
import redis.asyncio as aioredis
from helpers import on_redis
from secured import bearer, services_for

from composition.dedup.matching import normalize_prompt
from composition.runner import TaskRunner
from composition.store.prompt_index import digest
from composition.workflows.registry import build_workflows
from config import keys
from config.composition import RunnerArgs
from records.checkpoints import Checkpoints


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


def test_quota_is_exact_under_50_parallel_requests_and_refused_ones_leave_no_trace(secured):
    """Exactly the tier's 7 are accepted; the 43 refused prompts never reach the prompt index."""
    run = time.time_ns()

    async def steps(client, services):
        key, _ = await services.access.create_key(f"kim-{run}", "tight")
        responses = await asyncio.gather(*(client.post("/v1/images/generations", headers=bearer(key), json={
            "prompt": f"a lighthouse number {i} in a storm, run {run}", "seed": i, "wait_s": 0}) for i in range(50)))
        indexed = [bool([k async for k in services.redis.scan_iter(keys.prompt_exact("*", digest(normalize_prompt(
            f"a lighthouse number {i} in a storm, run {run}"))))]) for i in range(50)]
        return responses, indexed

    responses, indexed = secured(steps)
    codes = [r.status_code for r in responses]
    assert codes.count(202) + codes.count(200) == 7 and codes.count(429) == 43, codes
    assert indexed == [code != 429 for code in codes]
    refused = next(r for r in responses if r.status_code == 429).json()["error"]
    assert refused["code"] == "quota_exceeded" and refused["field"] == "images" and "7" in refused["message"]


def test_an_idempotent_retry_after_its_task_ended_is_that_task_and_charges_nothing(secured):
    """The first request ends (single-flight no longer joins it, and the cache would answer the same body); its
    retry, under the same Idempotency-Key with another `wait_s`, answers with the first task and its result, and the
    tier's daily quota was charged once."""
    run = time.time_ns()
    user = f"ida-{run}"

    async def steps(client, services):
        key, _ = await services.access.create_key(user, "tight")
        headers = bearer(key) | {"Idempotency-Key": f"boat-{run}"}
        body = {"prompt": f"a paper boat on a pond, run {run}", "seed": 3}
        first = await client.post("/v1/images/generations", headers=headers, json=body | {"wait_s": 120})
        quota = [k async for k in services.redis.scan_iter(keys.quota(user, "images", "*"))]
        charged = int(await services.redis.get(quota[0]))
        retry = await client.post("/v1/images/generations", headers=headers, json=body | {"wait_s": 5})
        return first, retry, charged, int(await services.redis.get(quota[0]))

    first, retry, charged, after = secured(steps)
    assert first.status_code == 200 and first.json()["cache_hit"] is False
    assert retry.status_code == 200 and retry.headers["X-Task-Id"] == first.headers["X-Task-Id"]
    assert retry.json() == first.json()
    assert charged == after == 1


def test_rate_limit_answers_429_with_retry_after(secured):
    async def steps(client, services):
        key, _ = await services.access.create_key(f"lou-{time.time_ns()}", "slow")
        return [await client.get("/v1/styles", headers=bearer(key)) for _ in range(3)]

    responses = secured(steps)
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert int(responses[2].headers["Retry-After"]) >= 1
    assert responses[2].json()["error"]["code"] == "rate_limited"


def test_a_tiers_lane_and_weight_reach_the_task_record_the_replicas_schedule_by(secured, redis_url):
    """What a diffusion replica reads at admission (`Checkpoints.load`): the key's tier's lane and weight."""
    run = time.time_ns()

    async def steps(client, services):
        key, _ = await services.access.create_key(f"hal-{run}", "heavy")
        response = await client.post("/v1/images/generations", headers=bearer(key), json={
            "prompt": f"a heavy anchor, run {run}", "wait_s": 0})
        found = Checkpoints(redis.Redis.from_url(redis_url)).load([(response.json()["task_id"], "no-such-job")])
        return response.status_code, found

    status, [job] = secured(steps)
    assert status == 202
    assert (job.lane, job.user, job.weight, job.state) == ("normal", f"hal-{run}", 3.0, None)


def test_priority_is_capped_by_the_tier_and_lower_lanes_are_always_allowed(secured, redis_url):
    """A low-lane tier asking for high gets its own lane; a high-lane tier may ask for less; the task shows it all and
    the replicas read the same lane."""
    run = time.time_ns()
    asks = [("tight", "high", "a copper kettle on a stove"), ("tight", None, "a glass marble in the sand"),
            ("pro", "low", "a tin robot in the rain"), ("heavy", "high", "a green umbrella at a bus stop")]

    async def steps(client, services):
        shown = []
        for tier, priority, prompt in asks:
            key, _ = await services.access.create_key(f"pri-{tier}-{run}", tier)
            body = {"prompt": f"{prompt}, run {run}", "wait_s": 0} | ({"priority": priority} if priority else {})
            response = await client.post("/v1/images/generations", headers=bearer(key), json=body)
            assert response.status_code == 202, response.text
            task_id = response.json()["task_id"]
            task = (await client.get(f"/v1/tasks/{task_id}", headers=bearer(key))).json()
            [job] = Checkpoints(redis.Redis.from_url(redis_url)).load([(task_id, "no-such-job")])
            shown.append((task["lane"], task["weight"], job.lane))
        return shown

    assert secured(steps) == [("low", 1.0, "low"), ("low", 1.0, "low"), ("low", 1.0, "low"),
                              ("normal", 3.0, "normal")]


def test_keys_cli_prints_the_key_last(redis_url, capsys, monkeypatch):
    from cluster.cli import main
    from composition.store.access import AccessStore

    def lookup(key):
        return on_redis(redis_url, lambda client: AccessStore(client).lookup(key))

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
        body = {"prompt": "a quiet harbour", "mode": "general", "target": "image"}  # the stored job: no HTTP fields
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
