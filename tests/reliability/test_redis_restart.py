"""Redis restarted under load: while it is down `/ready` and requests answer 503 with Retry-After (never a 500),
the service recovers by itself, and tasks, variants, seen sets and keys survive through the AOF; SIGKILLed under
load, every task accepted a second before the kill finishes once."""
import concurrent.futures
import threading
import time
import uuid

import httpx
import pytest
import redis
from helpers import BASE, wait_ready, wait_task

from config import keys


def wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the load answered nothing"
        time.sleep(0.2)


class Load:
    """Clients posting fresh image requests (wait 0) until stopped; records every answer."""

    def __init__(self, clients: int = 4) -> None:
        self.answers: list[httpx.Response | Exception] = []
        self.times: list[float] = []  # when each answer arrived (time.monotonic)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]
        self.tag = uuid.uuid4().hex[:8]

    def _client(self, index: int) -> None:
        with httpx.Client(base_url=BASE, timeout=60) as http:
            for seed in range(10**6):
                if self.stop.is_set():
                    return
                body = {"prompt": f"a paper boat on a pond {self.tag}", "seed": index * 10**6 + seed, "wait_s": 0}
                try:
                    self.answers.append(http.post("/v1/images/generations", json=body))
                except httpx.HTTPError as exc:
                    self.answers.append(exc)
                self.times.append(time.monotonic())
                time.sleep(0.2)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=90)


def test_redis_restart_under_load(client, redis_server, redis_url):
    if redis_server is None:
        pytest.skip("REDIS_URL names an external Redis this test cannot restart")
    store = redis.Redis.from_url(redis_url)
    assert store.config_get("appendonly")["appendonly"] == "yes"
    assert store.config_get("appendfsync")["appendfsync"] == "everysec"

    soul = f"soul-{uuid.uuid4().hex[:8]}"
    assert client.put(f"/v1/styles/{soul}", json={"prompt": "a lighthouse keeper, woodcut"}).status_code == 200
    variant = client.get(f"/v1/souls/{soul}/image", params={"user_id": "rita"}).json()
    assert client.post(f"/v1/variants/{variant['variant_id']}/seen", json={"user_id": "sam"}).status_code == 200
    finished = client.post("/v1/prompts/optimize", json={"prompt": "a harbour at dawn", "wait_s": 60})
    finished_task = finished.headers["x-task-id"]
    key_count = store.dbsize()

    with Load() as load:
        wait_until(lambda: any(isinstance(a, httpx.Response) and a.status_code == 202 for a in load.answers))
        redis_server.stop()  # SIGTERM: Redis flushes its AOF and exits
        answered = len(load.answers)
        down = {"ready": client.get("/ready"),
                "post": client.post("/v1/images/generations", json={"prompt": "a gull", "wait_s": 0}),
                "task": client.get(f"/v1/tasks/{finished_task}"),
                "variants": client.get(f"/v1/prompts/{variant['prompt_key']}/variants")}
        wait_until(lambda: len(load.answers) >= answered + 8)  # 4 clients: at least 4 of them asked while it was down
        redis_server.start()
        wait_ready(client)
        time.sleep(2)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:  # every pooled connection went stale with the restart
        after = list(pool.map(lambda i: client.post("/v1/images/generations", json={
            "prompt": f"a paper boat on a pond {load.tag}", "seed": 10**9 + i, "wait_s": 0}), range(20)))

    assert down["ready"].status_code == 503 and down["ready"].json()["checks"]["redis"]["ok"] is False
    for name in ("post", "task", "variants"):
        assert down[name].status_code == 503, (name, down[name].text)
        assert down[name].json()["error"]["code"] == "unavailable" and int(down[name].headers["retry-after"]) > 0

    assert [r.status_code for r in after] == [202] * 20, [r.text for r in after if r.status_code != 202]
    answers = load.answers + after
    assert not [a for a in answers if isinstance(a, Exception)]
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 202, 503}, statuses
    assert 503 in statuses and 202 in statuses  # the load did run through the outage
    assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status_code == 503)
    accepted = [a.json()["task_id"] for a in answers if a.status_code == 202]
    outcomes = [wait_task(client, task_id, timeout_s=300)["status"] for task_id in accepted]
    assert outcomes == ["succeeded"] * len(accepted)  # nothing accepted was lost

    assert store.dbsize() >= key_count
    assert client.get(f"/v1/tasks/{finished_task}").json()["status"] == "succeeded"
    assert store.sismember(keys.seen("sam"), variant["variant_id"])
    assert store.sismember(keys.seen("rita"), variant["variant_id"])
    pool = client.get(f"/v1/prompts/{variant['prompt_key']}/variants").json()["variants"]
    assert variant["variant_id"] in {v["variant_id"] for v in pool}
    assert client.get(f"/v1/styles/{soul}").status_code == 200


def test_redis_sigkill_under_load_loses_no_task_accepted_a_second_before(client, redis_server, redis_url):
    if redis_server is None:
        pytest.skip("REDIS_URL names an external Redis this test cannot kill")
    with Load() as load:
        deadline = time.monotonic() + 60
        while sum(getattr(a, "status_code", 0) == 202 for a in list(load.answers)) < 10:  # pools may be stale at first
            assert time.monotonic() < deadline, "the load did not get through"
            time.sleep(0.1)
        time.sleep(1.2)
        killed_at = time.monotonic()
        redis_server.process.kill()  # SIGKILL: no shutdown, no last AOF flush
        redis_server.process.wait()
        time.sleep(2)
        redis_server.start()  # same port and directory: the AOF is replayed
        wait_ready(client)
        time.sleep(2)
    accepted = [(answer.json()["task_id"], at) for answer, at in zip(load.answers, load.times, strict=False)
                if not isinstance(answer, Exception) and answer.status_code == 202]
    before = [task_id for task_id, at in accepted if at < killed_at - 1.0]
    assert len(before) >= 10
    tasks = [wait_task(client, task_id, timeout_s=300) for task_id in before]
    assert [task["status"] for task in tasks] == ["succeeded"] * len(tasks)  # nothing accepted was lost
    images = [image for task in tasks for image in task["result"]["images"]]
    assert len({image["variant_id"] for image in images}) == len(images)  # each ran once: no duplicated result
    pool = client.get(f"/v1/prompts/{tasks[0]['result']['prompt_key']}/variants").json()["variants"]
    seeds = [variant["seed"] for variant in pool]
    assert len(seeds) == len(set(seeds))  # no seed rendered twice into the pool
