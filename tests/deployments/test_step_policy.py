"""A replica's step policy on a real Redis (the deployment class in-process, tiny SDXL on the CPU): checkpoints by
count and after the last step, at every step while draining, within the size cap, previews but not for the low lane,
resume from a stored state, and a corrupt state that starts the job over."""
from __future__ import annotations

import asyncio
import json

import redis

from config import keys
from config.families import StepPolicy
from deployments.base import Job
from deployments.families import SDXLDeployment
from records.checkpoints import job_digest
from models.steps import Steps, StepState
from models.types import ImageRequest

STEPS = 7
REDIS_DB = 9  # this module's own database


def _run(replica: SDXLDeployment, store: redis.Redis, task_id: str, policy: StepPolicy, lane: str = "normal",
         seed: int = 0) -> tuple[object, list[dict]]:
    """Runs one live task's job through the replica's grouped execution; (result, the task's published events)."""
    store.hset(keys.task(task_id), mapping={"id": task_id, "status": "running", "lane": lane})
    replica.policy = policy
    pubsub = store.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.task_events(task_id))
    pubsub.get_message(timeout=1.0)  # the subscription's confirmation
    request = ImageRequest(prompt="a red kite", width=64, height=64, steps=STEPS, guidance=5.0, seed=seed)
    (result,) = asyncio.run(replica.execute([Job(request, task_id)], "generate", "denoising"))
    events = []
    while message := pubsub.get_message(timeout=0.2):
        events.append(json.loads(message["data"]))
    pubsub.close()
    return result, events


def _named(events: list[dict], name: str) -> list[int]:
    return [e["step"] for e in events if e.get("event") == name]


def _steps(events: list[dict]) -> list[int]:
    """The steps computed, from the progress events."""
    return [e["step"] for e in events if "step" in e and "event" not in e]


def test_checkpoints_every_n_steps_and_after_the_last_one(replica, store):
    result, events = _run(replica, store, "policy-count", StepPolicy(checkpoint_every=3, preview_every=0))
    assert _named(events, "checkpoint") == [3, 6, 7]
    assert _steps(events) == list(range(1, STEPS + 1))
    request = ImageRequest(prompt="a red kite", width=64, height=64, steps=STEPS, guidance=5.0, seed=0)
    state = StepState.from_bytes(store.hget(keys.task_checkpoints("policy-count"), job_digest(request)))
    cells = 64 // replica.model.union.vae_scale_factor
    assert (state.step, state.total, tuple(state.latents.shape)) == (STEPS, STEPS, (1, 4, cells, cells))
    assert 0 < store.ttl(keys.task_checkpoints("policy-count")) <= StepPolicy().checkpoint_ttl_s
    assert result.metadata.resumed_from_step is None


def test_a_draining_replica_checkpoints_every_step_and_caps_the_size(replica, store):
    replica.unhealthy_reason = "operator drain"
    try:
        _, events = _run(replica, store, "policy-drain", StepPolicy(checkpoint_every=0, preview_every=0))
        assert _named(events, "checkpoint") == list(range(1, STEPS + 1))
        _, events = _run(replica, store, "policy-cap", StepPolicy(checkpoint_max_mb=0.001, preview_every=0))
        assert _named(events, "checkpoint") == [] and not store.exists(keys.task_checkpoints("policy-cap"))
    finally:
        replica.unhealthy_reason = None


def test_previews_every_k_steps_but_none_for_the_low_lane(replica, store):
    _, events = _run(replica, store, "policy-preview", StepPolicy(preview_every=2))
    assert _named(events, "preview") == [2, 4, 6]
    assert all(e["image"].startswith("data:image/jpeg;base64,") for e in events if e.get("event") == "preview")
    _, events = _run(replica, store, "policy-low", StepPolicy(preview_every=2), lane="low")
    assert _named(events, "preview") == []


def test_a_stored_state_resumes_and_a_corrupt_one_starts_over(replica, store):
    policy = StepPolicy(checkpoint_every=4, preview_every=0)
    uninterrupted, _ = _run(replica, store, "policy-full", policy, seed=5)
    request = ImageRequest(prompt="a red kite", width=64, height=64, steps=STEPS, guidance=5.0, seed=5)
    # The state after step 4 of the same request, as a crashed replica would have left it for the retry.
    saved: list[bytes] = []
    replica.model.generate([request], Steps(
        on_step=lambda b: saved.extend(s.to_bytes() for s in b.states()) if b.done == 4 else None))
    store.hset(keys.task_checkpoints("policy-resume"), job_digest(request), saved[0])
    resumed, events = _run(replica, store, "policy-resume", policy, seed=5)
    assert resumed.metadata.resumed_from_step == 4
    assert [e["step"] for e in events if "resumed_from_step" in e] == [5, 6, 7]
    assert resumed.png == uninterrupted.png

    store.hset(keys.task_checkpoints("policy-corrupt"), job_digest(request), b"not a state")
    restarted, events = _run(replica, store, "policy-corrupt", policy, seed=5)
    assert restarted.metadata.resumed_from_step is None and restarted.png == uninterrupted.png
    assert _steps(events) == list(range(1, STEPS + 1))
