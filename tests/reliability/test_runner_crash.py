"""Runner and ingress crashes: a SIGKILLed runner's task is reclaimed by its successor and finishes; a storyboard
whose runner (and ingress) die between scenes resumes from its cached steps instead of regenerating them."""
import json
import os
import signal
import time

import redis
from helpers import png, replica_pids, slow_video, upload, wait_ready, wait_running, wait_task

from config import keys


def test_a_killed_runner_task_is_reclaimed_and_finishes(client, redis_url):
    task_id = slow_video(client, seed=22, steps=30)
    wait_running(client, task_id)
    [runner] = replica_pids("TaskRunner")
    os.kill(runner, signal.SIGKILL)
    task = wait_task(client, task_id, timeout_s=240)
    assert task["status"] == "succeeded", task
    assert redis.Redis.from_url(redis_url).hget(keys.task(task_id), "attempts") == b"2"
    assert client.get("/ready").status_code == 200  # a new runner replica took over


def test_a_storyboard_resumes_from_its_cached_steps_after_runner_and_ingress_die(client, redis_url):
    """Kill the runner and the ingress while clips render, and plant a different keyframe in the step cache: the
    retried task must use the cached scenes and keyframe rather than generate them again."""
    body = {"theme": "a lantern drifting downriver", "num_scenes": 2, "scene_seconds": 8, "fps": 16, "wait_s": 0}
    task_id = client.post("/v1/storyboards", json=body).json()["task_id"]
    deadline = time.monotonic() + 120
    while client.get(f"/v1/tasks/{task_id}").json()["stage"] not in ("clips", "animating"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    steps = redis.Redis.from_url(redis_url)
    planted = upload(client, png(64, 64, seed=23))
    steps.hset(keys.task_steps(task_id), "keyframes:0", json.dumps(planted))
    scenes = json.loads(steps.hget(keys.task_steps(task_id), "scenes"))
    for pid in replica_pids("TaskRunner") + replica_pids("Ingress"):
        os.kill(pid, signal.SIGKILL)
    wait_ready(client, timeout_s=60)  # the ingress comes back by itself
    task = wait_task(client, task_id, timeout_s=300)
    assert task["status"] == "succeeded", task["error"]
    assert steps.hget(keys.task(task_id), "attempts") == b"2"
    assert task["result"]["keyframes"][0]["asset_id"] == planted  # not regenerated
    assert task["result"]["scenes"] == scenes["scenes"]  # the LLM did not plan the scenes again
