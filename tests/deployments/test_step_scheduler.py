"""The replica's step scheduler (the deployment class in-process, tiny SDXL on the CPU, a real Redis): a high-lane job
overtakes a running low-lane one at a step boundary, the paused job continues from its step and both equal their
solo runs; users take turns (of a step, or of `turn_s`), so one user's backlog does not hold another user's single job;
a higher lane does not wait for a turn to end."""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time

import numpy as np
import redis

import helpers

from config import keys
from deployments.base import Job
from deployments.families import SDXLDeployment
from deployments.scheduler import StepScheduler
from models.types import ImageRequest


REDIS_DB = 10  # this module's own database


def _request(steps: int, seed: int) -> ImageRequest:
    return ImageRequest(prompt="a red kite", width=64, height=64, steps=steps, guidance=5.0, seed=seed)


class Run:
    """Jobs submitted to the replica concurrently; each task's step events (with their time) and end time."""

    def __init__(self, replica: SDXLDeployment, store: redis.Redis) -> None:
        self.replica, self.store = replica, store
        self.pubsub = store.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(keys.task_events("sched-*"))
        self.pubsub.get_message(timeout=1.0)
        self.ended: dict[str, float] = {}

    async def job(self, task_id: str, request: ImageRequest, lane: str, user: str, after: float = 0.0):
        await asyncio.sleep(after)
        self.store.hset(keys.task(task_id), mapping={"id": task_id, "status": "running", "lane": lane,
                                                     "user_id": user})
        (result,) = await self.replica.execute([Job(request, task_id)], "generate", "denoising")
        self.ended[task_id] = time.time()
        return result

    async def admitted(self, task_id: str, request: ImageRequest, user: str, after: float = 0.0):
        """Through the replica's own admission (`generate`), as Serve calls it."""
        await asyncio.sleep(after)
        self.store.hset(keys.task(task_id), mapping={"id": task_id, "status": "running", "lane": "normal",
                                                     "user_id": user})
        result = await self.replica.generate(request, task_id)
        self.ended[task_id] = time.time()
        return result

    async def when_at_step(self, task_id: str, step: int, total: int) -> None:
        while float(self.store.hget(keys.task(task_id), "progress") or 0) < step / total:
            await asyncio.sleep(0.005)

    def behind(self, first: tuple[str, ImageRequest, str, str], then: tuple[str, ImageRequest, str, str],
               at_step: int) -> tuple:
        """Results of `first` (task id, request, lane, user), and of `then` submitted once `first` did `at_step`."""
        async def both():
            running = asyncio.ensure_future(self.job(*first))
            await self.when_at_step(first[0], at_step, first[1].steps)
            second = await self.job(*then)
            return await running, second

        return asyncio.run(both())

    def steps(self) -> list[tuple[str, int, float]]:
        """(task id, step, time) of every step event, in publication order."""
        found = []
        while message := self.pubsub.get_message(timeout=0.5):
            event = json.loads(message["data"])
            if "step" in event and "event" not in event:
                found.append((event["id"], event["step"], event["updated_at"]))
        self.pubsub.close()
        return found


def test_a_high_lane_job_overtakes_a_running_low_lane_job_at_a_step_boundary(replica, store):
    """Of the low job's shape, the high one does not join its denoiser calls (lanes never share a forward): it takes
    the device."""
    run = Run(replica, store)
    low, high = _request(30, seed=1), _request(3, seed=2)

    slow, quick = run.behind(("sched-low", low, "low", "ann"), ("sched-high", high, "high", "bob"), at_step=5)
    events = run.steps()
    low_steps = [(step, at) for task, step, at in events if task == "sched-low"]
    high_steps = [(step, at) for task, step, at in events if task == "sched-high"]
    assert [s for s, _ in low_steps] == list(range(1, 31))  # paused, then continued: never restarted
    assert [s for s, _ in high_steps] == [1, 2, 3]
    first, last = high_steps[0][1], high_steps[-1][1]
    assert not [s for s, at in low_steps if first < at < last]  # the low job held no step meanwhile
    assert run.ended["sched-high"] < run.ended["sched-low"]
    solo = replica.model.generate([low, high])  # the same requests without any scheduling
    assert (slow.png, quick.png) == (solo[0].png, solo[1].png)


def test_users_take_turns_so_a_backlog_does_not_hold_another_users_job(replica, store, monkeypatch):
    monkeypatch.setattr(replica.scheduler, "turn_s", 0.0)  # turns of a step (tiny steps are shorter than a turn)
    monkeypatch.setattr(replica.scheduler, "batch_budget", 0)  # turns of one job (no continuous batching)
    run = Run(replica, store)
    backlog = {f"sched-a{i}": _request(6, seed=10 + i) for i in range(3)}

    async def bob_once_ann_is_under_way():  # her first job (whichever started) at its step 2
        while not any(float(store.hget(keys.task(task), "progress") or 0) >= 2 / 6 for task in backlog):
            await asyncio.sleep(0.005)
        return await run.job("sched-b", _request(6, seed=20), "normal", "bob")

    async def all_jobs():
        jobs = [run.job(task_id, request, "normal", "ann") for task_id, request in backlog.items()]
        return await asyncio.gather(*jobs, bob_once_ann_is_under_way())

    asyncio.run(all_jobs())
    events = run.steps()
    order = [task for task, _, _ in events]
    bob = [index for index, task in enumerate(order) if task == "sched-b"]
    assert len(bob) == 6
    assert max(b - a - 1 for a, b in zip(bob, bob[1:])) <= 1, order  # one step of ann's between bob's: turns
    last = {task: index for index, task in enumerate(order)}  # each job's last step, in the replica's order
    assert last["sched-b"] < sorted(last[t] for t in backlog)[1], order  # before ann's 2nd job ends


def test_a_job_of_the_running_ones_shape_joins_it_at_a_step_boundary(replica, store):
    """Continuous batching through the replica: bob's job joins ann's running one at her next step boundary (their
    denoiser calls run as one from then on, ann's never paused), ends first, and both equal their solo runs."""
    run = Run(replica, store)
    long, short = _request(20, seed=5), _request(4, seed=6).model_copy(update={"prompt": "a green field"})

    slow, quick = run.behind(("sched-fann", long, "normal", "ann"), ("sched-fbob", short, "normal", "bob"), at_step=5)
    events = run.steps()
    ann = [at for task, _, at in events if task == "sched-fann"]
    bob = [step for task, step, _ in events if task == "sched-fbob"]
    assert [step for task, step, _ in events if task == "sched-fann"] == list(range(1, 21)) and bob == [1, 2, 3, 4]
    assert ann[0] < run.ended["sched-fbob"] < ann[-1]  # bob ran inside ann's job, not after it
    assert (slow.metadata.fused_requests, quick.metadata.fused_requests) == (2, 2)
    for result, request in ((slow, long), (quick, short)):
        alone = replica.model.generate([request])[0]
        assert np.abs(np.asarray(helpers.decode_png(result.png), dtype=int) - np.asarray(helpers.decode_png(alone.png), dtype=int)).max() <= 1


def test_gpu_seconds_of_a_fused_turn_sum_to_its_measured_time(replica, store):
    """Three users' jobs of one shape run as one turn (their forwards fused): each request's `gpu_seconds` (its share
    of every forward by batch rows, plus its own encoding, scheduler steps and decode) sum to the turn's measured wall
    time within 5 %."""
    run = Run(replica, store)
    requests = {f"sched-gpu{i}": _request(8, seed=40 + i).model_copy(update={"width": 256, "height": 256})
                for i in range(3)}

    async def together():
        return await asyncio.gather(*(run.job(task, request, "normal", f"gpu-user{i}")
                                      for i, (task, request) in enumerate(requests.items())))

    started = time.perf_counter()
    results = asyncio.run(together())
    wall_s = time.perf_counter() - started
    run.steps()
    assert [result.metadata.fused_requests for result in results] == [3, 3, 3]
    accounted = sum(result.metadata.gpu_seconds for result in results)
    assert abs(accounted - wall_s) <= 0.05 * wall_s, (accounted, wall_s)
    assert all(result.metadata.gpu_seconds > 0.1 * accounted for result in results)


STEPS = 30  # long enough that ann's first groups still run when bob arrives, on a loaded machine too


def test_admission_keeps_a_group_slot_for_another_users_job_behind_a_backlog(replica, store, monkeypatch):
    """ann queues 20 jobs (4 group slots, batches of 4): her groups leave the last slot free; bob's one job, arriving
    once her first group has stepped (some of her jobs still queued), takes it at once: no job of hers
    ends between his arrival and his first step (a FIFO queue gives her every slot: bob waits for two of her groups
    to end)."""
    monkeypatch.setattr(replica.scheduler, "turn_s", 0.0)
    monkeypatch.setattr(replica._generate, "max_groups", 4)  # fewer slots than ann's groups
    run = Run(replica, store)
    arrived: list[float] = []

    async def bob():
        await run.when_at_step("sched-adm-a0", 1, STEPS)
        arrived.append(time.time())
        return await run.admitted("sched-adm-b", _request(STEPS, seed=60), "bob")

    async def all_jobs():
        ann = [run.admitted(f"sched-adm-a{i}", _request(STEPS, seed=30 + i), "ann") for i in range(20)]
        return await asyncio.gather(*ann, bob())

    results = asyncio.run(all_jobs())
    events = run.steps()
    bob_first = min(at for task, _, at in events if task == "sched-adm-b")
    ann_starts = [at for task, step, at in events if task != "sched-adm-b" and step == 1]
    ann_ends = sorted(at for task, at in run.ended.items() if task != "sched-adm-b")
    assert max(ann_starts) > arrived[0]  # bob came while her backlog waited (a FIFO queue would run it first)
    assert not [at for at in ann_ends if arrived[0] < at < bob_first], (arrived, bob_first, ann_ends[:8])
    assert max(r.metadata.batch_size for r in results) == 4 and results[-1].seed == 60


def test_a_lone_call_holds_the_device_without_waiting():
    scheduler = StepScheduler()
    ticket = scheduler.ticket("normal", "ann")
    with scheduler.running(ticket):
        for _ in range(3):
            scheduler.boundary(ticket)  # nobody waits: returns at once
        assert scheduler.waiting() == 0



def _steps_of(scheduler: StepScheduler, ticket, steps: int, log: list[str]) -> None:
    """A call of `steps` 10 ms steps holding the device for `ticket`; each step's user goes to `log`."""
    with scheduler.running(ticket):
        for _ in range(steps):
            time.sleep(0.01)
            log.append(ticket.user)
            scheduler.boundary(ticket)


def _log(scheduler: StepScheduler, first, then) -> list[str]:
    """The user of each step, when ticket `then` asks for the device once `first` holds it (30 steps each)."""
    log: list[str] = []
    threads = [threading.Thread(target=_steps_of, args=(scheduler, ticket, 30, log)) for ticket in (first, then)]
    threads[0].start()
    while not log:
        time.sleep(0.001)
    threads[1].start()
    for thread in threads:
        thread.join()
    return log


def _contend(turn_s: float, first: tuple[str, str], then: tuple[str, str]) -> list[tuple[str, int]]:
    """(user, steps in a row) of each turn, when `then` (user, lane) asks for the device once `first` holds it."""
    scheduler = StepScheduler(turn_s)
    log = _log(scheduler, *(scheduler.ticket(lane, user) for user, lane in (first, then)))
    return [(user, len(list(steps))) for user, steps in itertools.groupby(log)]


def test_with_no_turn_users_of_a_lane_alternate_at_every_step():
    runs = _contend(0.0, ("ann", "normal"), ("bob", "normal"))
    assert sum(n for user, n in runs if user == "bob") == 30
    assert all(n == 1 for _, n in runs[1:-1]), runs  # after ann's first step(s), one step each


def test_users_of_a_lane_take_turns_of_turn_s_and_a_higher_lane_takes_over_at_the_next_step():
    runs = _contend(0.15, ("ann", "normal"), ("bob", "normal"))
    assert len(runs) <= 8, runs  # 0.6 s of steps in turns of 0.15 s, not 60 turns of a step
    assert runs[0][0] == "ann" and runs[0][1] >= 5 and runs[1][0] == "bob" and runs[1][1] >= 5, runs
    runs = _contend(60.0, ("ann", "low"), ("carol", "high"))
    assert runs[0][0] == "ann" and runs[0][1] <= 3, runs  # carol did not wait for the end of ann's 60 s turn
    assert runs[1] == ("carol", 30) and runs[2][0] == "ann", runs


def test_a_tier_weight_gives_its_user_that_share_of_the_lanes_steps():
    """ann's tier weighs 3, bob's 1: while both run, ann gets three steps to each of bob's (weighted round-robin)."""
    scheduler = StepScheduler(0.0)
    log = _log(scheduler, scheduler.ticket("normal", "ann", weight=3.0), scheduler.ticket("normal", "bob"))
    both = log[log.index("bob"):len(log) - log[::-1].index("ann")]  # from bob's first step to ann's last
    assert 2.5 <= both.count("ann") / both.count("bob") <= 3.5, log
