"""Tasks over HTTP: SSE progress, cancellation between steps, listing and stats; a killed runner's task is
reclaimed by its successor and finishes."""
import json
import os
import signal
import time

import redis
from helpers import png
from test_images import upload
from test_media_workflows import wait_task

from config import keys


def slow_video(client, seed: int, steps: int = 40) -> str:
    image = upload(client, png(64, 64, seed=seed))
    response = client.post("/v1/videos/generations", json={"image": image, "model": "svd", "num_frames": 8,
                                                            "steps": steps, "seed": seed})
    assert response.status_code == 202
    return response.json()["task_id"]


def wait_running(client, task_id: str, progress: float = 0.0) -> dict:
    deadline = time.monotonic() + 60
    while True:
        task = client.get(f"/v1/tasks/{task_id}").json()
        if task["status"] == "running" and task["progress"] > progress:
            return task
        assert time.monotonic() < deadline and task["status"] in ("queued", "running"), task
        time.sleep(0.05)


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


def test_a_killed_runner_task_is_reclaimed_and_finishes(client, redis_url):
    from ray import serve

    task_id = slow_video(client, seed=22, steps=30)
    wait_running(client, task_id)
    runner = serve.get_deployment_handle("TaskRunner", "montage").status.remote().result()
    os.kill(runner["pid"], signal.SIGKILL)
    task = wait_task(client, task_id, timeout_s=240)
    assert task["status"] == "succeeded", task
    assert redis.Redis.from_url(redis_url).hget(keys.task(task_id), "attempts") == b"2"
    assert client.get("/ready").status_code == 200  # a new runner replica took over


def test_a_retried_storyboard_resumes_from_its_cached_steps(client, redis_url):
    """Kill the runner while clips render, plant a different keyframe in the step cache: the retried task must
    use the cached keyframe (and scenes) rather than render them again."""
    from ray import serve

    body = {"theme": "a lantern drifting downriver", "num_scenes": 2, "scene_seconds": 8, "fps": 16, "wait_s": 0}
    task_id = client.post("/v1/storyboards", json=body).json()["task_id"]
    deadline = time.monotonic() + 120
    while client.get(f"/v1/tasks/{task_id}").json()["stage"] not in ("clips", "animating"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    runner = serve.get_deployment_handle("TaskRunner", "montage").status.remote().result()
    os.kill(runner["pid"], signal.SIGKILL)
    steps = redis.Redis.from_url(redis_url)
    planted = upload(client, png(64, 64, seed=23))
    steps.hset(keys.task_steps(task_id), "keyframes:0", json.dumps(planted))
    scenes = json.loads(steps.hget(keys.task_steps(task_id), "scenes"))
    task = wait_task(client, task_id, timeout_s=300)
    assert task["status"] == "succeeded", task["error"]
    assert steps.hget(keys.task(task_id), "attempts") == b"2"
    assert task["result"]["keyframes"][0]["asset_id"] == planted
    assert task["result"]["scenes"] == scenes["scenes"]
