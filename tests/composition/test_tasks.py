"""Tasks over HTTP: SSE progress, cancellation between steps, listing and stats."""
import asyncio
import json
import time
from pathlib import Path

import psutil
import redis
from helpers import clip_after_earlier_jobs, on_redis, png, replica_pids, slow_video, upload, wait_running, wait_task

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


def _cpu_s(pids: list[int], window_s: float) -> float:
    """CPU seconds these processes (and their threads) use over the next `window_s`."""
    processes = [psutil.Process(pid) for pid in pids]
    before = sum(sum(p.cpu_times()[:2]) for p in processes)
    time.sleep(window_s)
    return sum(sum(p.cpu_times()[:2]) for p in processes) - before


def test_cancel_stops_the_replicas_computation_between_steps(client, redis_url):
    """A 100-step clip cancelled at about its fifth step stops computing there: SVD's replicas go idle within a step
    (while it ran they used CPU as a job does), and a clip of another shape submitted right after (the same user, so
    on the same replica it waits for the first: no fusion across shapes) reaches its first step about as soon as on
    an idle replica, not after the ~95 steps the cancelled job had left."""
    alone_s = min(clip_after_earlier_jobs(client, seed=22 + i) for i in range(2))
    task_id = slow_video(client, seed=21, steps=100)
    running = wait_running(client, task_id, progress=0.02)
    timed_from = time.monotonic()
    at_cancel = wait_running(client, task_id, progress=running["progress"] + 0.02)
    step_s = (time.monotonic() - timed_from) / round((at_cancel["progress"] - running["progress"]) * 100)
    replicas = replica_pids("SVD")
    busy_s = _cpu_s(replicas, 1.0)
    cancelled = client.delete(f"/v1/tasks/{task_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    time.sleep(2 * step_s)  # the step in flight ends
    idle_s = _cpu_s(replicas, 1.0)
    assert idle_s < min(0.2, busy_s / 3), (idle_s, busy_s)
    behind_s = clip_after_earlier_jobs(client, seed=24)
    left_s = (1 - at_cancel["progress"]) * 100 * step_s
    assert behind_s < alone_s + 3 * step_s + 1.0 < left_s, (behind_s, alone_s, step_s, left_s)
    task = client.get(f"/v1/tasks/{task_id}").json()
    assert task["status"] == "cancelled" and task["progress"] < 1.0 and task["result"] is None
    assert task["stage"] == "cancelled"  # no late step moves it back to "animating"
    again = client.delete(f"/v1/tasks/{task_id}")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    stream = redis.Redis.from_url(redis_url).xpending(keys.task_stream("normal"), keys.RUNNER_GROUP)
    assert stream["pending"] == 0  # the runner acknowledged it: nothing left to reclaim
    logged = "".join(path.read_text() for path in _replica_logs("SVD"))  # a cancellation is no failure
    assert "Request cancelled: animating cancelled at step" in logged and "records.tasks.Cancelled" not in logged


def _replica_logs(deployment: str) -> list[Path]:
    """The Serve log files of the session app's replicas of `deployment`."""
    from ray._private.worker import _global_node

    return sorted(Path(_global_node.get_logs_dir_path(), "serve").glob(f"replica_montage_{deployment}_*.log"))


def test_list_and_stats(client):
    response = client.post("/v1/prompts/optimize", json={"prompt": "a quiet harbour", "user_id": "lister"})
    assert response.status_code == 200
    listed = client.get("/v1/tasks", params={"user_id": "lister"}).json()["tasks"]
    assert [t["kind"] for t in listed] == ["prompt"] and listed[0]["status"] == "succeeded"
    stats = client.get("/v1/tasks/stats").json()
    assert stats["by_status"]["succeeded"] >= 1 and set(stats["lanes"]) == {"high", "normal", "low"}
    assert client.get(f"/v1/tasks/{'0' * 32}").status_code == 404
    assert client.get("/v1/tasks/..%2F..%2Fetc").status_code == 404  # the decoded slashes leave the route


def test_an_unknown_kind_or_status_is_a_422_naming_it(client):
    """Like `status`, `kind` is checked: a typo is a 422 listing the known kinds (the workflows'), not an empty list."""
    response = client.get("/v1/tasks", params={"kind": "nope"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "kind" and all(f"'{kind}'" in error["message"] for kind in ("image", "video", "fork"))
    bogus = client.get("/v1/tasks", params={"status": "bogus"})
    assert bogus.status_code == 422 and bogus.json()["error"]["field"] == "status", bogus.text
    assert client.get("/v1/tasks", params={"kind": "prompt"}).status_code == 200


def test_filtered_list_finds_older_matches_past_the_newest_tasks(redis_url):
    """Five failed tasks behind 300 newer successful ones: `?status=failed&limit=5` lists all five."""
    import uuid

    from composition.store.tasks import TaskStore

    user = f"pager-{uuid.uuid4().hex[:8]}"

    async def run(client):
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

    failed, listed, newest = on_redis(redis_url, run)
    assert [r.id for r in listed] == failed[::-1] and all(r.status == "failed" for r in listed)
    assert len(newest) == 7 and all(r.status == "succeeded" for r in newest)


def test_a_finished_task_cannot_be_cancelled(client):
    done = client.post("/v1/prompts/optimize", json={"prompt": "a quiet harbour", "user_id": "finisher"})
    assert done.status_code == 200
    refused = client.delete(f"/v1/tasks/{done.headers['X-Task-Id']}")
    assert refused.status_code == 409 and refused.json()["error"]["field"] == "task_id"
    assert "succeeded" in refused.json()["error"]["message"]
    assert client.get(f"/v1/tasks/{done.headers['X-Task-Id']}").json()["status"] == "succeeded"


def test_late_progress_never_moves_a_cancelled_task_back(redis_url):
    """A replica's step report or a workflow's stage that arrives after the cancel leaves the task as cancelled."""
    from composition.store.tasks import TaskStore
    from records.tasks import ProgressReporter

    async def run(client):
        store = TaskStore(client)
        task_id, _ = await store.create("video", {"x": 1}, user_id="late")
        await store.start(task_id, 3)
        await store.set_stage(task_id, "animating", 0.3)
        await store.cancel(task_id)
        reported = ProgressReporter(redis_url).report(task_id, 7, 10, "animating")
        await store.set_stage(task_id, "encoding")
        return reported, await store.get(task_id)

    reported, task = on_redis(redis_url, run)
    assert reported is True and (task.status, task.stage, task.progress) == ("cancelled", "cancelled", 0.3)


def test_a_task_of_several_parts_keeps_its_stage_and_its_whole_progress_never_goes_back(redis_url):
    """With a workflow's shares (a storyboard's), the whole task's progress moves within the stage's share by its
    parts: those done (as the workflow counts them, with a model step or without, or whose steps are all done) and
    the steps done of those still running (side by side, they add up); a part's replica (its start, its steps, their
    stage) and a wait for a model keep the workflow's stage, counts of parts done that arrive out of order keep the
    larger, progress never goes back, a new stage starts its own parts, and every published event says what the
    record says."""
    from composition.store.tasks import TaskStore
    from records.tasks import ProgressReporter, Span

    shares = {"scenes": 0.2, "frames": 0.4, "clips": 0.4}

    async def run(client):
        store, reporter = TaskStore(client), ProgressReporter(redis_url)
        task_id, _ = await store.create("storyboard", {"x": 1}, user_id="parts")
        await store.start(task_id, 3)
        events = client.pubsub()
        await events.subscribe(keys.task_events(task_id))
        await events.get_message(timeout=1)  # the subscription's confirmation
        seen = []

        async def then(update) -> None:
            await update
            task = await store.get(task_id)
            event = json.loads((await events.get_message(timeout=2))["data"])
            assert (event["stage"], event["progress"]) == (task.stage, task.progress), (event, task)
            seen.append((task.stage, task.progress, task.step, task.waiting_for))

        async def at(update) -> None:  # a replica's (blocking) report, off the event loop
            await asyncio.to_thread(update)

        await then(store.set_stage(task_id, "frames", span=Span.of(shares, "frames", 0, 4)))
        await then(at(lambda: reporter.started([task_id], "denoising")))
        await then(at(lambda: reporter.report(task_id, 1, 2, "denoising", part="a")))
        await then(at(lambda: reporter.report(task_id, 1, 2, "denoising", part="b")))  # beside a: 2 halves
        await then(at(lambda: reporter.report(task_id, 2, 2, "denoising", part="a")))  # its steps done: it counts
        await then(store.set_stage(task_id, "frames", span=Span.of(shares, "frames", 1, 4)))  # a: done
        await then(store.set_stage(task_id, "frames", span=Span.of(shares, "frames", 2, 4)))  # c: done, no step
        await then(store.set_stage(task_id, "frames", span=Span.of(shares, "frames", 1, 4)))  # late: 2 stay done
        await then(store.wait_for(task_id, "wan", None))
        await then(at(lambda: reporter.report(task_id, 2, 2, "animating", part="b")))  # done, not counted yet
        await then(store.set_stage(task_id, "clips", span=Span.of(shares, "clips", 0, 2)))
        await then(at(lambda: reporter.report(task_id, 1, 4, "animating", part="b")))
        await events.aclose()
        return seen

    # frames run from 0.2 to 0.6 of the whole: a part is 0.1 of it
    assert on_redis(redis_url, run) == [
        ("frames", 0.2, None, None), ("frames", 0.2, None, None), ("frames", 0.25, 1, None), ("frames", 0.3, 1, None),
        ("frames", 0.35, 2, None), ("frames", 0.35, None, None), ("frames", 0.45, None, None),
        ("frames", 0.45, None, None), ("frames", 0.45, None, "wan"), ("frames", 0.45, 2, None),
        ("clips", 0.6, None, None), ("clips", 0.65, 1, None)]


def test_a_task_waiting_for_a_busy_model_shows_its_queue_position_and_eta(client):
    """While SVD renders a long clip, later clips wait: stage "waiting", their place in SVD's queue and an ETA from
    measured request times, on GET and SSE; a waiting task is never shown as animating at 0.0."""
    def video(frames: int, steps: int, seed: int) -> str:
        body = {"image": upload(client, png(64, 64, seed=seed)), "model": "svd", "num_frames": frames,
                "steps": steps, "seed": seed}
        response = client.post("/v1/videos/generations", json=body)
        assert response.status_code == 202, response.text
        return response.json()["task_id"]

    assert wait_task(client, video(4, 2, 60))["status"] == "succeeded"  # a measured request time for the ETA
    busy = slow_video(client, seed=61, steps=100)
    wait_running(client, busy, progress=0.01)
    first, second = video(6, 2, 62), video(5, 2, 63)  # other frame counts: groups of their own, run after busy
    deadline = time.monotonic() + 30
    while (task := client.get(f"/v1/tasks/{second}").json())["stage"] != "waiting":
        assert time.monotonic() < deadline, task
        time.sleep(0.05)
    assert task["status"] == "running" and task["waiting_for"] == "svd" and task["eta_s"] > 0
    positions = {client.get(f"/v1/tasks/{t}").json()["queue_position"] for t in (first, second)}
    assert positions == {0, 1}
    with client.stream("GET", f"/v1/tasks/{second}/events") as stream:
        event = json.loads(next(line for line in stream.iter_lines() if line.startswith("data:"))[5:])
    assert event["stage"] == "waiting" and event["queue_position"] in (0, 1) and event["eta_s"] > 0
    assert client.delete(f"/v1/tasks/{busy}").status_code == 200
    for task_id in (first, second):
        done = wait_task(client, task_id)
        assert done["status"] == "succeeded" and done["waiting_for"] is None and done["queue_position"] is None


def test_the_eta_adds_the_estimates_of_the_tasks_ahead_at_their_own_sizes(redis_url):
    """A small clip waiting behind a large one: its ETA is both estimates, not twice a mean request. (Database 9:
    the session's runner, which reads database 0, must not run these tasks.)"""
    import uuid

    from composition.store.tasks import TaskStore
    from composition.store.timings import TimingStore
    from models.types import Metadata

    family = f"fam-{uuid.uuid4().hex[:8]}"

    async def run(client):
        store = TaskStore(client)
        await TimingStore(client).record(family, Metadata(model="x", source="tiny", device="cpu", run_ms=500), 1)
        ids = []
        for estimate in (3000.0, 1000.0, None):
            task_id, _ = await store.create("video", {}, user_id="eta")
            await store.start(task_id, 3)
            await store.wait_for(task_id, family, estimate)
            ids.append(task_id)
        return [await store.get(task_id) for task_id in ids]

    large, small, unmeasured = on_redis(redis_url.rsplit("/", 1)[0] + "/9", run)
    assert (large.queue_position, large.eta_s) == (0, 3.0)
    assert (small.queue_position, small.eta_s) == (1, 4.0)
    assert (unmeasured.queue_position, unmeasured.eta_s) == (2, 4.5)  # no estimate of its own: the mean request


def test_a_task_waiting_for_another_tasks_render_shows_that_work_until_its_own_moves_on(redis_url):
    """A task waiting for the render another task holds (same prompt and seed) shows that task's model wait (queue
    place, ETA), then its steps, then where it ended (not 0 until this task moves on), as its own wait's; its next
    stage, or its end, ends the wait. (Database 9, as above.)"""
    import uuid

    from composition.store.tasks import TaskStore
    from records.tasks import ProgressReporter

    database = redis_url.rsplit("/", 1)[0] + "/9"
    family = f"fam-{uuid.uuid4().hex[:8]}"

    async def run(client):
        store = TaskStore(client)
        holder, waiter = [(await store.create("image", {}, user_id="render"))[0] for _ in range(2)]
        for task_id in (holder, waiter):
            await store.start(task_id, 3)
        await store.wait_for(holder, family, 2000.0)
        await store.wait_on(waiter, holder)
        seen = [await store.get(waiter)]
        ProgressReporter(database).report(holder, 3, 10, "denoising")
        seen.append(await store.get(waiter))
        await store.succeed(holder, {})
        seen.append(await store.get(waiter))
        await store.set_stage(waiter, "preparing")
        seen.append(await store.get(waiter))
        await store.wait_on(waiter, holder)
        await store.succeed(waiter, {})
        seen.append(await store.get(waiter))
        return holder, seen

    holder, (queued, stepping, rendered, own, ended) = on_redis(database, run)
    mirrored = ("stage", "progress", "rendered_by", "waiting_for", "queue_position", "eta_s", "step", "steps")
    assert [getattr(queued, name) for name in mirrored] == ["waiting", 0.0, holder, family, 0, 2.0, None, None]
    assert [getattr(stepping, name) for name in mirrored] == ["waiting", 0.3, holder, None, None, None, 3, 10]
    assert [getattr(rendered, name) for name in mirrored] == ["waiting", 1.0, holder, None, None, None, 3, 10]
    assert [getattr(own, name) for name in mirrored] == ["preparing", 0.0, None, None, None, None, None, None]
    assert (ended.status, ended.rendered_by, ended.step) == ("succeeded", None, None)


def test_the_runner_maps_errors_as_the_ingress_does(redis_url, tmp_path):
    """A request's own fault (`InvalidRequest`, also inside the `ValidationError` of a model request the task builds)
    fails its task at once with a 422 naming the field; a library's `ValueError` is a server failure: retried up to
    max_attempts, then a 500 that names no field."""
    import asyncio

    from pydantic import BaseModel

    from composition.runner import TaskRunner
    from composition.services import build_services
    from composition.workflows.base import Workflow
    from config.composition import CompositionArgs, RunnerArgs
    from models.errors import InvalidRequest
    from models.types import ImageRequest

    class Fault(BaseModel):
        kind: str

    class Faulty(Workflow[Fault]):
        kind, job_type, attempts = "faulty", Fault, 0

        async def run(self, ctx, job):
            Faulty.attempts += 1
            if job.kind == "schema":  # a control's image that is no image (an MP4's bytes)
                ImageRequest(prompt="x", width=64, height=64, steps=2, guidance=1.0, seed=0,
                             controls=[{"type": "canny", "image": png()}, {"type": "depth", "image": b"\0\0\0 ftyp"}])
            raise InvalidRequest("width", "too wide") if job.kind == "request" else ValueError("a library bug")

    own_db = redis_url.rsplit("/", 1)[0] + "/9"

    async def run(kind: str):
        await redis.asyncio.Redis.from_url(own_db).flushdb()
        services = build_services(CompositionArgs(asset_dir=tmp_path), own_db, {}, {})
        Faulty.attempts = 0
        task_id, _ = await services.tasks.create("faulty", {"kind": kind})
        runner = TaskRunner(services, {"faulty": Faulty(services)}, RunnerArgs(max_attempts=2, block_ms=50))
        loop = asyncio.create_task(runner.run())
        while not (record := await services.tasks.get(task_id)).terminal:
            await asyncio.sleep(0.05)
        loop.cancel()
        return record, Faulty.attempts

    refused, tries = asyncio.run(run("request"))
    assert tries == 1 and refused.error == {"code": "invalid_request", "message": "width: too wide", "field": "width",
                                            "status": 422}
    refused, tries = asyncio.run(run("schema"))
    assert tries == 1 and refused.error == {"code": "invalid_request", "field": "controls.1.image", "status": 422,
                                            "message": "controls.1.image: not a decodable image"}
    failed, tries = asyncio.run(run("bug"))
    assert tries == 2 and failed.error["status"] == 500 and failed.error["code"] == "internal"
    assert failed.error["field"] is None


def test_a_request_picks_its_lane_and_the_task_shows_lane_and_weight(client):
    """Auth off: every lane is allowed; no priority is the normal lane."""
    run = time.time_ns()
    prompts = {"high": "a red paper boat on a pond", "low": "a brass telescope on an oak desk",
               None: "a snowy mountain cabin at night"}
    shown = {}
    for priority, prompt in prompts.items():
        body = {"prompt": f"{prompt}, run {run}", "wait_s": 0} | ({"priority": priority} if priority else {})
        response = client.post("/v1/images/generations", json=body)
        assert response.status_code == 202, response.text
        task = client.get(f"/v1/tasks/{response.json()['task_id']}").json()
        shown[priority] = (task["lane"], task["weight"])
    assert shown == {"high": ("high", 1.0), "low": ("low", 1.0), None: ("normal", 1.0)}
    bad = client.post("/v1/images/generations", json={"prompt": f"a kite, run {run}", "priority": "urgent"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "priority"


def test_polling_shows_the_step_steps_and_preview_that_sse_carries(client, redis_url):
    """While it runs, the record has the last step and preview (bounded); the preview leaves with the task's end."""
    from records.tasks import PREVIEW_MAX_CHARS

    task_id = slow_video(client, seed=27, steps=100)
    deadline = time.monotonic() + 60
    while (task := client.get(f"/v1/tasks/{task_id}").json())["preview"] is None:
        assert time.monotonic() < deadline and task["status"] in ("queued", "running"), task
        time.sleep(0.05)
    assert task["stage"] == "animating" and task["steps"] == 100 and 1 <= task["step"] < 100
    assert task["progress"] == round(task["step"] / 100, 4)
    preview = task["preview"]
    assert preview["steps"] == 100 and 1 <= preview["step"] <= 100
    assert preview["image"].startswith("data:image/jpeg;base64,")
    stored = redis.Redis.from_url(redis_url).hget(keys.task(task_id), "preview")
    assert json.loads(stored)["step"] >= preview["step"] and len(json.loads(stored)["image"]) <= PREVIEW_MAX_CHARS
    assert client.delete(f"/v1/tasks/{task_id}").status_code == 200
    time.sleep(1.0)
    ended = client.get(f"/v1/tasks/{task_id}").json()
    assert ended["status"] == "cancelled" and ended["preview"] is None and ended["steps"] == 100
    assert redis.Redis.from_url(redis_url).hget(keys.task(task_id), "preview") is None


def test_a_preview_is_kept_bounded_and_only_while_the_task_is_live(redis_url):
    """The newest preview under the bound is kept; a larger one is sent but not kept; a late one after the end is
    neither; a new stage starts without the last stage's step and preview."""

    from composition.store.tasks import TaskStore
    from records.tasks import PREVIEW_MAX_CHARS, ProgressReporter

    small, large = "data:image/jpeg;base64," + "A" * 1000, "data:image/jpeg;base64," + "A" * PREVIEW_MAX_CHARS
    reporter, raw = ProgressReporter(redis_url), redis.Redis.from_url(redis_url)

    async def run(client):
        store = TaskStore(client)
        task_id, _ = await store.create("video", {"x": 2}, user_id="previewer")
        await store.start(task_id, 3)
        seen = []
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(keys.task_events(task_id))
            reporter.report(task_id, 2, 8, "animating")
            reporter.preview(task_id, 2, 8, small)
            seen.append(await store.get(task_id))
            reporter.preview(task_id, 3, 8, large)
            seen.append(await store.get(task_id))
            reporter.preview(task_id, 4, 8, small)
            await store.set_stage(task_id, "encoding", 0.9)
            seen.append(await store.get(task_id))
            await store.cancel(task_id)
            reporter.preview(task_id, 5, 8, small)
            seen.append(await store.get(task_id))
            events, deadline = [], time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1):
                    events.append(json.loads(message["data"]))
        return task_id, seen, events

    task_id, (kept, too_large, new_stage, ended), events = on_redis(redis_url, run)
    assert (kept.step, kept.steps, kept.preview.step, kept.preview.image) == (2, 8, 2, small)
    assert (too_large.step, too_large.preview) == (2, None)
    assert (new_stage.stage, new_stage.step, new_stage.steps, new_stage.preview) == ("encoding", None, None, None)
    assert (ended.status, ended.preview) == ("cancelled", None) and raw.hget(keys.task(task_id), "preview") is None
    assert [e["step"] for e in events if e.get("event") == "preview"] == [2, 3, 4]  # the large one is sent too
