"""A model replica SIGKILLed while a batch of 20 tasks is in flight: every task ends, at least 19 succeed after
retry, none is rendered twice, and the deployment recovers."""
import concurrent.futures
import os
import signal
import time
import uuid

import redis
from helpers import replica_pids, wait_task

from config import keys

TASKS = 20


def test_killing_a_model_replica_mid_batch_loses_no_task(client, redis_url):
    prompt = f"a lighthouse in a storm, crash test {uuid.uuid4().hex[:8]}"
    bodies = [{"prompt": prompt, "model": "sdxl", "width": 64, "height": 64, "steps": 8, "seed": seed,
               "wait_s": 0} for seed in range(TASKS)]
    with concurrent.futures.ThreadPoolExecutor(TASKS) as pool:
        responses = list(pool.map(lambda body: client.post("/v1/images/generations", json=body), bodies))
    assert [r.status_code for r in responses] == [202] * TASKS, [r.text for r in responses if r.status_code != 202]
    task_ids = [r.json()["task_id"] for r in responses]
    deadline = time.monotonic() + 120
    while not any(client.get(f"/v1/tasks/{t}").json()["progress"] > 0 for t in task_ids):  # a batch is denoising
        assert time.monotonic() < deadline
        time.sleep(0.05)
    killed = replica_pids("SDXL")
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    tasks = [wait_task(client, t, timeout_s=300) for t in task_ids]
    store = redis.Redis.from_url(redis_url)
    attempts = [int(store.hget(keys.task(t), "attempts")) for t in task_ids]
    succeeded = [task for task in tasks if task["status"] == "succeeded"]
    assert all(task["status"] in ("succeeded", "failed", "cancelled") for task in tasks)
    assert len(succeeded) >= TASKS - 1, [task["error"] for task in tasks if task["status"] != "succeeded"]
    assert max(attempts) >= 2  # the kill did hit work in flight, which was retried
    images = [image for task in succeeded for image in task["result"]["images"]]
    assert len(images) == len(succeeded)
    assert len({image["variant_id"] for image in images}) == len({image["asset_id"] for image in images}) == len(images)
    prompt_key = succeeded[0]["result"]["prompt_key"]
    assert store.zcard(keys.prompt_variants(prompt_key)) == len(succeeded)  # one variant per seed, none twice

    assert set(replica_pids("SDXL")).isdisjoint(killed)  # Serve replaced the replica
    again = client.post("/v1/images/generations", json={**bodies[0], "seed": TASKS, "wait_s": 120})
    assert again.status_code == 200 and again.json()["cache_hit"] is False
