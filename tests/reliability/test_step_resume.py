"""Step checkpoints through the running app (tiny models, real Serve and Redis): a video job whose replica is
SIGKILLed past half its steps resumes from its newest checkpoint on the replacement replica and ends with the same
video; checkpoints leave with their task; previews arrive on the SSE stream."""
import base64
import io
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import redis
from helpers import clip_after_earlier_jobs, png, replica_pids, upload, wait_task
from PIL import Image

from config import keys
from models.media import decode_mp4

STEPS = 24  # a kill past half leaves 12 steps to run while replica_pids asks Ray which process to kill
CHECKPOINT_EVERY = 5  # serve_config.yaml's svd and wan policy


class Events:
    """A task's published events (steps, checkpoints, previews), collected from Redis pub/sub in a thread."""

    def __init__(self, redis_url: str, task_id: str) -> None:
        self.items: list[dict] = []
        self.pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(keys.task_events(task_id))
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        try:
            for message in self.pubsub.listen():
                self.items.append(json.loads(message["data"]))
        except (redis.ConnectionError, ValueError, AttributeError):  # closed by `close`
            pass

    def wait(self, found, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if match := next((e for e in list(self.items) if found(e)), None):
                return match
            time.sleep(0.005)
        raise AssertionError(f"no such event in {self.items[-5:]}")

    def close(self) -> None:
        self.pubsub.close()


# A size no other test's videos use: a job that shared its denoiser forwards with another (continuous batching) would
# differ from its reference run by float noise, and these runs are compared byte for byte.
UNSHARED = {"width": 80, "height": 64}


def _video(client, model: str, seed: int, wait_s: float) -> dict:
    frames = {"svd": 8, "wan": 5}[model]
    image = upload(client, png(64, 64, seed=seed))
    response = client.post("/v1/videos/generations", json={
        "image": image, "model": model, "num_frames": frames, "steps": STEPS, "seed": seed, "gif": False,
        "wait_s": wait_s, **UNSHARED})
    assert response.status_code == (200 if wait_s else 202), response.text
    return response.json()


@pytest.mark.parametrize("model,deployment", [("svd", "SVD"), ("wan", "Wan")])
def test_a_video_job_killed_past_half_resumes_from_its_checkpoint_with_the_same_video(client, redis_url, model,
                                                                                      deployment):
    reference = _video(client, model, seed=31, wait_s=240)  # the uninterrupted run of the same request
    assert reference["metadata"]["resumed_from_step"] is None
    task_id = _video(client, model, seed=31, wait_s=0)["task_id"]
    events = Events(redis_url, task_id)
    try:
        events.wait(lambda e: e.get("event") == "checkpoint" and e["step"] >= STEPS // 2)
        for pid in replica_pids(deployment):  # the family autoscales: every replica, the job's among them
            os.kill(pid, signal.SIGKILL)
        killed_at = max(e["step"] for e in list(events.items) if "step" in e and "event" not in e)
        assert killed_at >= STEPS // 2
        task = wait_task(client, task_id)
    finally:
        events.close()
    assert task["status"] == "succeeded", task
    resumed = [e for e in events.items if "resumed_from_step" in e]
    start = resumed[0]["resumed_from_step"]
    assert {e["resumed_from_step"] for e in resumed} == {start}
    assert STEPS // 2 <= start <= killed_at
    computed = [e["step"] for e in resumed]
    assert computed == list(range(start + 1, STEPS + 1))
    assert len(computed) <= STEPS - killed_at + CHECKPOINT_EVERY
    assert task["result"]["metadata"]["resumed_from_step"] == start
    video = decode_mp4(client.get(task["result"]["video"]["url"]).content)
    assert np.array_equal(video, decode_mp4(client.get(reference["video"]["url"]).content))  # signed: same frames
    assert redis.Redis.from_url(redis_url).exists(keys.task_checkpoints(task_id)) == 0


def test_a_redeploy_hands_running_jobs_back_and_they_resume_where_they_stopped(client, redis_url, restart):
    """A redeploy replaces what the job passes through (the ingress, the task runner, the SVD replica) while it runs:
    Serve stops the SVD replica, whose job checkpoints at the next step boundary and is handed back; the new replica
    resumes it from there, losing no step."""
    image = upload(client, png(64, 64, seed=34))
    response = client.post("/v1/videos/generations", json={
        "image": image, "model": "svd", "num_frames": 8, "width": 128, "height": 128, "steps": 60, "seed": 34,
        "gif": False})
    task_id = response.json()["task_id"]
    events = Events(redis_url, task_id)
    try:
        events.wait(lambda e: e.get("step", 0) >= 3)
        restart(["Ingress", "TaskRunner", "SVD"])
        task = wait_task(client, task_id)
    finally:
        events.close()
    assert task["status"] == "succeeded", task
    steps = [e for e in events.items if "step" in e and "event" not in e]
    # Every step computed once, in order, over every hand-back: a stopping replica may still take the job back
    # from the router once more and hand it on at its next step.
    assert [e["step"] for e in steps] == list(range(1, 61))
    starts = [(i, e["resumed_from_step"]) for i, e in enumerate(steps)
              if e.get("resumed_from_step") != (steps[i - 1].get("resumed_from_step") if i else None)]
    assert starts and all(start == steps[i - 1]["step"] for i, start in starts)  # each run begins where one stopped
    assert task["result"]["metadata"]["resumed_from_step"] == starts[-1][1]


def test_checkpoints_leave_with_a_cancelled_task(client, redis_url):
    task_id = _video(client, "svd", seed=32, wait_s=0)["task_id"]
    events = Events(redis_url, task_id)
    store = redis.Redis.from_url(redis_url)
    try:
        events.wait(lambda e: e.get("event") == "checkpoint")
        assert store.exists(keys.task_checkpoints(task_id)) == 1
        assert client.delete(f"/v1/tasks/{task_id}").status_code == 200
        events.wait(lambda e: e.get("status") == "cancelled")
        clip_after_earlier_jobs(client, seed=34)  # the cancelled job has left the replica: no step is in flight
    finally:
        events.close()
    assert store.exists(keys.task_checkpoints(task_id)) == 0


def test_previews_arrive_on_the_sse_stream_as_jpegs(client):
    task_id = _video(client, "wan", seed=33, wait_s=0)["task_id"]
    previews = []
    with client.stream("GET", f"/v1/tasks/{task_id}/events", timeout=120) as stream:
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                if name == "preview":
                    previews.append(event)
                name = None
                if event.get("status") in ("succeeded", "failed", "cancelled") and "event" not in event:
                    break
    assert event["status"] == "succeeded"
    assert [p["step"] for p in previews] == list(range(1, STEPS + 1))  # serve_config.yaml: every step
    header, data = previews[-1]["image"].split(",", 1)
    assert header == "data:image/jpeg;base64"
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format == "JPEG" and max(image.size) <= 256
