"""Tasks over HTTP: SSE progress, cancellation between steps, listing and stats."""
import json
import time

import redis
from helpers import slow_video, wait_running

from config import keys


def test_events_stream_progress_then_the_terminal_status(client):
    response = client.post("/v1/images/generations", json={"prompt": "a kite over dunes", "steps": 6, "wait_s": 0})
    task_id = response.json()["task_id"]
    events = []
    with client.stream("GET", f"/v1/tasks/{task_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["status"] == "succeeded" and events[-1]["result"]["images"]
    progress = [e["progress"] for e in events if e.get("stage") == "denoising"]
    assert progress == sorted(progress) and len(progress) >= 2


def test_cancel_stops_a_running_task_between_steps(client, redis_url):
    task_id = slow_video(client, seed=21, steps=100)
    wait_running(client, task_id, progress=0.01)
    cancelled = client.delete(f"/v1/tasks/{task_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    time.sleep(2.0)
    task = client.get(f"/v1/tasks/{task_id}").json()
    assert task["status"] == "cancelled" and task["progress"] < 1.0 and task["result"] is None
    stream = redis.Redis.from_url(redis_url).xpending(keys.task_stream("normal"), keys.RUNNER_GROUP)
    assert stream["pending"] == 0  # the runner acknowledged it: nothing left to reclaim


def test_list_and_stats(client):
    response = client.post("/v1/prompts/optimize", json={"prompt": "a quiet harbour", "user_id": "lister"})
    assert response.status_code == 200
    listed = client.get("/v1/tasks", params={"user_id": "lister"}).json()["tasks"]
    assert [t["kind"] for t in listed] == ["prompt"] and listed[0]["status"] == "succeeded"
    stats = client.get("/v1/tasks/stats").json()
    assert stats["by_status"]["succeeded"] >= 1 and set(stats["lanes"]) == {"high", "normal", "low"}
    assert client.get(f"/v1/tasks/{'0' * 32}").status_code == 404
    assert client.get("/v1/tasks/..%2F..%2Fetc").status_code in (404, 422)


def test_filtered_list_finds_older_matches_past_the_newest_tasks(redis_url):
    """Five failed tasks behind 300 newer successful ones: `?status=failed&limit=5` lists all five."""
    import asyncio
    import uuid

    import redis.asyncio as aioredis

    from composition.store.tasks import TaskStore

    user = f"pager-{uuid.uuid4().hex[:8]}"

    async def run():
        client = aioredis.Redis.from_url(redis_url)
        try:
            store = TaskStore(client)
            failed = []
            for _ in range(5):
                task_id, _ = await store.create("prompt", {"prompt": "x"}, user_id=user)
                await store.fail(task_id, "boom", "test failure")
                failed.append(task_id)
            for _ in range(300):
                task_id, _ = await store.create("prompt", {"prompt": "y"}, user_id=user)
                await store.start(task_id, 3)
                await store.succeed(task_id, {})
            return failed, await store.list(user, "failed", None, 5), await store.list(user, None, None, 7)
        finally:
            await client.aclose()

    failed, listed, newest = asyncio.run(run())
    assert [r.id for r in listed] == failed[::-1] and all(r.status == "failed" for r in listed)
    assert len(newest) == 7 and all(r.status == "succeeded" for r in newest)
