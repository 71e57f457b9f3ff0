"""Forks: a new task from a finished image task's kept step state (POST /v1/tasks/{task_id}/fork)."""
import io
import time

import numpy as np
import redis
from PIL import Image
from helpers import wait_quiet
from secured import bearer

from config import keys


def _image(client, url: str) -> bytes:
    """The image's pixels (each output carries its own signed manifest, so bytes differ where pixels do not)."""
    response = client.get(url)
    assert response.status_code == 200
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).tobytes()


def test_a_fork_resumes_the_kept_step_and_differs_by_seed(client, redis_url):
    """A 5-step job keeps its states after steps 1-4; a fork at step 3 without changes computes steps 4 and 5 only
    (it keeps step 4 alone) and equals its parent bit for bit, as does one at the middle kept step (2) where no step
    is given; forks with seeds differ from it and from each other;
    a step not kept is a 422, an unknown task a 404, and once the states expire a 404. Bit for bit holds for jobs
    that ran alone (README, replay): the test starts once no earlier work is left."""
    store = redis.Redis.from_url(redis_url)
    wait_quiet(client)
    parent = client.post("/v1/images/generations", json={
        "prompt": f"a lighthouse at dusk, fork run {time.time_ns()}", "steps": 5, "seed": 11, "wait_s": 120})
    assert parent.status_code == 200 and parent.json()["images"][0]["metadata"]["fused_requests"] == 1, parent.text
    parent_id = parent.headers["X-Task-Id"]
    assert sorted(store.hkeys(keys.task_kept(parent_id))) == [b"11:1", b"11:2", b"11:3", b"11:4"]
    assert 0 < store.ttl(keys.task_kept(parent_id)) <= 3600
    parent_png = _image(client, parent.json()["images"][0]["url"])

    same = client.post(f"/v1/tasks/{parent_id}/fork", json={"step": 3, "wait_s": 120})
    assert same.status_code == 200, same.text
    [image] = same.json()["images"]
    assert image["metadata"]["forked_from"] == {"task_id": parent_id, "step": 3}
    assert image["metadata"]["resumed_from_step"] == 3 and image["variant_id"] is None and image["seed"] == 11
    assert image["metadata"]["fused_requests"] == 1
    fork_id = same.headers["X-Task-Id"]
    assert store.hkeys(keys.task_kept(fork_id)) == [b"11:4"]  # steps 1-3 were never computed
    assert client.get(f"/v1/tasks/{fork_id}").json()["kind"] == "fork"
    assert _image(client, image["url"]) == parent_png
    middle = client.post(f"/v1/tasks/{parent_id}/fork", json={"wait_s": 120})  # no step: the middle kept one
    assert middle.status_code == 200, middle.text
    assert middle.json()["images"][0]["metadata"]["forked_from"] == {"task_id": parent_id, "step": 2}
    assert middle.json()["images"][0]["metadata"]["fused_requests"] == 1
    assert _image(client, middle.json()["images"][0]["url"]) == parent_png

    seeded = [client.post(f"/v1/tasks/{parent_id}/fork", json={"step": 2, "seed": seed, "strength": 0.8,
                                                                "wait_s": 120}) for seed in (5, 6)]
    assert [r.status_code for r in seeded] == [200, 200]
    pngs = [_image(client, r.json()["images"][0]["url"]) for r in seeded]
    assert len({parent_png, *pngs}) == 3
    assert [r.json()["images"][0]["metadata"]["resumed_from_step"] for r in seeded] == [2, 2]

    reworded = client.post(f"/v1/tasks/{parent_id}/fork", json={"step": 3, "prompt": "a lighthouse at dawn",
                                                                 "wait_s": 120})
    assert reworded.status_code == 200 and reworded.json()["prompt_used"] == "a lighthouse at dawn"
    assert reworded.json()["prompt_key"] == parent.json()["prompt_key"]  # the pool it was forked from
    assert _image(client, reworded.json()["images"][0]["url"]) not in (parent_png, *pngs)

    not_kept = client.post(f"/v1/tasks/{parent_id}/fork", json={"step": 5})
    assert not_kept.status_code == 422 and not_kept.json()["error"]["field"] == "step"
    unknown = client.post(f"/v1/tasks/{'0' * 32}/fork", json={"step": 1})
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "task_id"
    store.delete(keys.task_kept(parent_id))  # as `fork_ttl_s` would
    expired = client.post(f"/v1/tasks/{parent_id}/fork", json={"step": 3})
    assert expired.status_code == 404 and "expired" in expired.json()["error"]["message"]


def test_another_users_task_is_a_403(secured):
    run = time.time_ns()

    async def steps(client, services):
        owner, _ = await services.access.create_key(f"ola-{run}", "pro")
        other, _ = await services.access.create_key(f"per-{run}", "pro")
        made = await client.post("/v1/images/generations", headers=bearer(owner), json={
            "prompt": f"a red kite, fork run {run}", "steps": 2, "seed": 1, "wait_s": 120})
        task_id = made.headers["X-Task-Id"]
        return (await client.post(f"/v1/tasks/{task_id}/fork", headers=bearer(other), json={"step": 1}),
                await client.post(f"/v1/tasks/{task_id}/fork", headers=bearer(owner), json={"step": 1, "wait_s": 120}))

    foreign, own = secured(steps)
    assert foreign.status_code == 403 and foreign.json()["error"]["field"] == "task_id"
    assert own.status_code == 200 and own.json()["images"][0]["metadata"]["forked_from"]["step"] == 1
