"""Webhooks over real HTTP both ways: tasks of the session app call real local receivers, whose deliveries are
verified with the `standardwebhooks` reference package; destinations are checked; a key signs with its own secret;
retries stop at the end of the window."""
import asyncio
import time

import httpx
import pytest
import redis
from helpers import Receiver, free_port, png, upload, wait_running, wait_task, webhook_secret
from secured import TIERS, bearer
from standardwebhooks import Webhook, WebhookVerificationError

from composition.api import create_api
from composition.services import build_services
from composition.webhooks import WebhookSender, check_destination
from composition.workflows.registry import build_workflows
from config import keys
from config.composition import AccessArgs, CompositionArgs, WebhookArgs
from models.errors import InvalidRequest
from records.webhooks import Subscription

LOOPBACK = ["127.0.0.0/8"]


def webhooks_of(client, task_id: str, delivered: int, timeout_s: float = 30) -> list[dict]:
    """The task's webhooks once `delivered` of its deliveries are delivered."""
    deadline = time.monotonic() + timeout_s
    while True:
        hooks = client.get(f"/v1/tasks/{task_id}").json()["webhooks"]
        if sum(d["status"] == "delivered" for hook in hooks for d in hook["deliveries"]) >= delivered:
            return hooks
        assert time.monotonic() < deadline, hooks
        time.sleep(0.1)


def test_a_receiver_failing_twice_gets_exactly_one_accepted_signed_delivery(client, redis_url):
    receiver = Receiver(replies=[500, 503]).start()
    try:
        response = client.post("/v1/prompts/optimize", json={
            "prompt": f"a kite over dunes {time.time_ns()}", "webhook_url": receiver.url})
        assert response.status_code == 200, response.text
        task_id = response.headers["x-task-id"]
        receiver.wait(accepted=1, timeout_s=30)
        [hook] = webhooks_of(client, task_id, delivered=1)
        # delivered: no attempt is due any more, so nothing more arrives
        assert redis.Redis.from_url(redis_url).zscore(keys.webhooks_due(), hook["deliveries"][0]["id"]) is None
    finally:
        receiver.stop()
    assert [status for _, _, status in receiver.received] == [500, 503, 200]
    assert len({headers["webhook-id"] for headers, _, _ in receiver.received}) == 1  # one message, retried
    verifier = Webhook(webhook_secret(redis_url))
    events = [verifier.verify(body, headers) for headers, body, _ in receiver.received]
    assert events[0] == events[2]  # the same payload on every attempt
    assert events[0]["type"] == "task.succeeded"
    assert events[0]["data"] == {"id": task_id, "kind": "prompt", "status": "succeeded", "result": response.json()}
    assert hook["url"] == receiver.url and hook["events"] == ["succeeded", "failed", "cancelled"]
    [delivery] = hook["deliveries"]
    assert delivery["id"] == receiver.received[0][0]["webhook-id"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("delivered", 3, 200)
    headers, body, _ = receiver.received[2]
    forged = {**headers, "webhook-signature": headers["webhook-signature"][:-6] + "AAAAA="}
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body, forged)


def test_progress_milestones_and_cancel_reach_a_filtered_receiver(client, redis_url):
    receiver = Receiver().start()
    try:
        body = {"image": upload(client, png(64, 64, seed=151)), "model": "svd", "num_frames": 8, "steps": 24,
                "seed": 151, "webhook_url": receiver.url, "webhook_events": ["progress", "cancelled"]}
        task_id = client.post("/v1/videos/generations", json=body).json()["task_id"]
        wait_running(client, task_id, progress=0.6)
        assert client.delete(f"/v1/tasks/{task_id}").status_code == 200
        verifier = Webhook(webhook_secret(redis_url))
        deadline = time.monotonic() + 30
        while not any(verifier.verify(b, h)["type"] == "task.cancelled" for h, b, _ in receiver.accepted()):
            assert time.monotonic() < deadline, receiver.received
            time.sleep(0.05)
        hooks = client.get(f"/v1/tasks/{task_id}").json()["webhooks"]
    finally:
        receiver.stop()
    events = [verifier.verify(body, headers) for headers, body, _ in receiver.accepted()]
    progress = sorted(e["data"]["progress"] for e in events if e["type"] == "task.progress")
    assert progress[:2] == [0.25, 0.5] and set(progress) <= {0.25, 0.5, 0.75}
    steps = {(e["data"]["progress"], e["data"].get("step"), e["data"].get("steps"))
             for e in events if e["type"] == "task.progress" and e["data"]["stage"] == "animating"}
    assert {(0.25, 6, 24), (0.5, 12, 24)} <= steps  # the model step that reached each milestone, as SSE has it
    [cancelled] = [e for e in events if e["type"] == "task.cancelled"]
    assert cancelled["data"] == {"id": task_id, "kind": "video", "status": "cancelled"}
    assert [e["type"] for e in events if e["type"] not in ("task.progress", "task.cancelled")] == []
    listed = {d["id"]: d for d in hooks[0]["deliveries"]}
    assert {headers["webhook-id"] for headers, _, _ in receiver.accepted()} <= set(listed)


def test_a_storyboards_progress_milestones_are_of_the_whole_task_each_once(client, redis_url):
    """A storyboard's progress is the whole task's: its subscribers hear 25, 50 and 75 % once each, in the stage
    that reached them (with its stages' shares, all in `clips`), never again in a later stage, then its success."""
    receiver = Receiver().start()
    try:
        body = {"theme": "a lantern festival", "num_scenes": 2, "scene_seconds": 1, "fps": 4,
                "webhook_url": receiver.url, "webhook_events": ["progress", "succeeded"]}
        task_id = client.post("/v1/storyboards", json=body).json()["task_id"]
        assert wait_task(client, task_id)["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while not all(d["status"] == "delivered" for hook in client.get(f"/v1/tasks/{task_id}").json()["webhooks"]
                      for d in hook["deliveries"]):  # every delivery made, the success included
            assert time.monotonic() < deadline, receiver.received
            time.sleep(0.1)
    finally:
        receiver.stop()
    verifier = Webhook(webhook_secret(redis_url))
    events = [verifier.verify(body, headers) for headers, body, _ in receiver.accepted()]
    assert [e["type"] for e in events].count("task.succeeded") == 1
    milestones = sorted((e["data"]["progress"], e["data"]["stage"]) for e in events if e["type"] == "task.progress")
    assert milestones == [(0.25, "clips"), (0.5, "clips"), (0.75, "clips")], milestones


@pytest.mark.parametrize("url", ["http://10.1.2.3/hook", "http://192.168.0.7:8080/", "http://[::1]:9000/hook",
                                 "http://169.254.169.254/latest/meta-data", "http://no-such-host.invalid/hook"])
def test_private_loopback_and_unresolvable_destinations_are_refused(client, url):
    """The session app allows 127.0.0.0/8 only: other private, link-local, IPv6 loopback hosts are refused."""
    before = client.get("/v1/tasks/stats").json()["by_status"]
    response = client.post("/v1/prompts/optimize", json={"prompt": "a quiet harbour", "webhook_url": url})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "webhook_url" and error["message"].startswith("webhook_url: ")
    assert client.get("/v1/tasks/stats").json()["by_status"] == before  # no task was made


def test_bad_webhook_fields_are_422_naming_the_field(client):
    cases = {"webhook_url": {"webhook_url": "ftp://127.0.0.1/hook"},
             "webhook_events": {"webhook_events": ["progress"]}}
    for field, extra in cases.items():
        response = client.post("/v1/prompts/optimize", json={"prompt": "a quiet harbour", **extra})
        assert response.status_code == 422 and response.json()["error"]["field"] == field, response.text
    response = client.post("/v1/prompts/optimize", json={"prompt": "a quiet harbour", "webhook_url": "http://x.y/",
                                                          "webhook_events": ["finished"]})
    assert response.status_code == 422 and response.json()["error"]["field"] == "webhook_events.0"


def refused(url: str, args: WebhookArgs) -> str | None:
    """Why `check_destination` refuses `url` under `args`; None when it is allowed."""
    try:
        asyncio.run(check_destination(url, args))
    except InvalidRequest as exc:
        assert exc.field == "webhook_url"
        return exc.message
    return None


def test_the_allow_list_admits_only_its_hosts_and_loopback_only_when_configured():
    listed = WebhookArgs(allow_hosts=["hooks.example.com", "*.example.org"], allow_networks=LOOPBACK)
    assert "allow-list" in refused("http://127.0.0.1:9/hook", listed)
    assert "allow-list" in refused("http://example.org/hook", listed)  # the domain's hosts, not the domain
    assert "does not resolve" in refused("http://a.example.org/hook", listed)  # allowed, then resolved
    assert "private or loopback" in refused("http://localhost:9/", WebhookArgs())
    assert "private or loopback" in refused("http://[::ffff:127.0.0.1]:9/", WebhookArgs())
    assert refused("http://127.0.0.1:9/", WebhookArgs(allow_networks=LOOPBACK)) is None


def test_with_auth_a_key_signs_with_its_own_secret(montage, redis_url):
    """The real app in-process with auth required; the session's runner runs the task and sends the delivery."""
    receiver = Receiver().start()
    _, asset_dir = montage
    args = CompositionArgs(asset_dir=asset_dir, access=AccessArgs(auth="required", tiers=TIERS),
                           webhooks=WebhookArgs(allow_networks=LOOPBACK))

    async def steps():
        services = build_services(args, redis_url, {}, {})
        key, record = await services.access.create_key(f"wen-{time.time_ns()}", "pro")
        transport = httpx.ASGITransport(app=create_api(services, build_workflows(services)))
        async with httpx.AsyncClient(transport=transport, base_url="http://montage") as api:
            created = await api.post("/v1/prompts/optimize", headers=bearer(key), json={
                "prompt": f"a red lantern {time.time_ns()}", "webhook_url": receiver.url, "wait_s": 0})
            task_id = created.json()["task_id"]
            while len(receiver.accepted()) < 1:
                await asyncio.sleep(0.05)
            return record, task_id, (await api.get(f"/v1/tasks/{task_id}", headers=bearer(key))).json()

    try:
        record, task_id, task = asyncio.run(asyncio.wait_for(steps(), 60))
    finally:
        receiver.stop()
    headers, body, _ = receiver.accepted()[0]
    event = Webhook(record.webhook_secret).verify(body, headers)
    assert event["type"] == "task.succeeded" and event["data"]["id"] == task_id
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_secret(redis_url)).verify(body, headers)
    assert task["webhooks"][0]["url"] == receiver.url


def test_retries_stop_when_the_window_closes(montage, redis_url):
    """A sender in-process on its own Redis database: a receiver that never listens; the delivery fails for good
    after a 1.5 s window, having been tried more than once, and is not due again."""
    _, asset_dir = montage
    own_url = redis_url.rsplit("/", 1)[0] + "/3"
    url = f"http://127.0.0.1:{free_port()}/hook"
    args = CompositionArgs(asset_dir=asset_dir, webhooks=WebhookArgs(
        allow_networks=LOOPBACK, retry_window_s=1.5, backoff_s=0.2, poll_s=0.05))

    async def run():
        services = build_services(args, own_url, {}, {})
        await services.redis.flushdb()
        task_id, _ = await services.tasks.create("prompt", {"prompt": "x"})
        await services.webhooks.subscribe(task_id, Subscription(url=url, events=["failed"]))
        await services.tasks.start(task_id, 3)
        await services.tasks.fail(task_id, "internal", "boom")
        sender = asyncio.create_task(WebhookSender(services).run())
        started = time.time()
        while (hook := (await services.webhooks.listed(task_id, None))[0]).deliveries[0].status == "pending":
            assert time.time() - started < 10
            await asyncio.sleep(0.05)
        due = await services.redis.zcard(keys.webhooks_due())  # failed for good: nothing left to attempt
        sender.cancel()
        return started, (await services.webhooks.listed(task_id, None))[0], hook, due

    started, later, hook, due = asyncio.run(run())
    [delivery] = later.deliveries
    assert delivery == hook.deliveries[0]  # no attempt after it failed
    assert delivery.status == "failed" and delivery.attempts >= 2, delivery  # a loaded machine fits 2 of ~4
    assert delivery.last_status is None and "ConnectError" in delivery.last_error
    assert delivery.last_attempt_at - started < 1.5 + 0.5 and due == 0
    assert delivery.event == "task.failed"
