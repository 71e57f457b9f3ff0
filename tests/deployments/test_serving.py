"""One real Ray Serve app of the tiny SDXL, deployed as `serve deploy` does: batching, progress, reconfigure, autoscaling
and health, each a config update of the running app (no restart where Serve allows it)."""
import asyncio
import pickle
import time

import numpy as np
import pytest
import ray
import redis
from helpers import own_ray_serve, pixels  # noqa: F401 (its Ray)

from config.app import Autoscaling, Batching, DeploymentOptions
from config.keys import task as task_key
from models.types import ImageRequest
from records.tasks import Cancelled

# An app of its own on a Ray of its own, off the Ray lane (lanes.py)
pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group("serving")]


def image_request(seed: int, steps: int = 2) -> ImageRequest:
    return ImageRequest(prompt=f"a lighthouse at dusk {seed}", width=64, height=64, steps=steps, guidance=5.0, seed=seed)


APP = "sdxl_serving"
BATCHING = {"max_batch_size": 8, "batch_wait_timeout_s": 0.3}
ONE = Autoscaling(min_replicas=1, max_replicas=1)


def options(**change) -> DeploymentOptions:
    base = dict(num_gpus=0.25, num_cpus=0.1, max_ongoing_requests=32, health_check_period_s=1.0,
                health_check_timeout_s=10.0, graceful_shutdown_timeout_s=1.0,
                batching=Batching(max_batch_size=8, batch_wait_timeout_s=0.3))
    return DeploymentOptions(**{**base, **change})


def deploy_config(redis_url: str, batching: dict, autoscaling: Autoscaling) -> None:
    """A config deploy (`serve deploy`) of one SDXL app; a later one that changes only the deployment's user_config
    (the batching) or autoscaling_config updates the running replicas (Serve keeps the code version: `reconfigure`,
    a new replica count), restarting none. The module's tests run on this one app, in file order."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    deployment = options().model_dump(exclude={"autoscaling", "batching"}, exclude_none=True)
    family = {"args": {"source": "tiny"}, "deployment": deployment}
    config = {"applications": [{"name": APP, "route_prefix": None,
                                "import_path": "deployments.builder:build_family_app",
                                "args": {"family": "sdxl", "deployment": family, "redis_url": redis_url},
                                "deployments": [{"name": "SDXL", "user_config": batching,
                                                 "autoscaling_config": autoscaling.model_dump(exclude_none=True)}]}]}
    serve_start().deploy_apps(ServeDeploySchema.model_validate(config))


def wait_for_batching(serve, expected: int) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            state = serve.get_app_handle(APP).batching.remote().result(timeout_s=10)
            if state["max_batch_size"] == expected:
                return state
        except Exception:  # app still deploying
            pass
        time.sleep(1)
    raise AssertionError(f"max_batch_size never became {expected}")


def running_replicas(serve) -> int:
    status = serve.status().applications[APP].deployments["SDXL"]
    return status.replica_states.get("RUNNING", 0)


def wait_for_replicas(serve, expected: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while running_replicas(serve) != expected:
        assert time.monotonic() < deadline, f"never {expected} running replicas"
        time.sleep(0.5)


async def concurrently(handle, requests, **kwargs):
    return await asyncio.gather(*(handle.generate.remote(r, **kwargs) for r in requests))


@pytest.fixture(scope="module")
def sdxl(ray_serve, redis_url):
    deploy_config(redis_url, BATCHING, ONE)
    wait_for_batching(ray_serve, BATCHING["max_batch_size"])
    yield ray_serve.get_app_handle(APP)
    ray_serve.delete(APP)


def test_concurrent_requests_are_batched_and_equal_unbatched(sdxl):
    requests = [image_request(seed) for seed in range(16)]
    results = asyncio.run(concurrently(sdxl, requests))
    sizes = [r.metadata.batch_size for r in results]
    assert max(sizes) > 1, sizes
    assert all(r.metadata.replica and r.metadata.queue_ms >= 0 for r in results)
    for request, result in zip(requests[:4], results[:4], strict=True):
        single = sdxl.generate.remote(request).result()  # alone: batch of one, same replica
        assert single.metadata.batch_size == 1 and result.seed == request.seed
        assert np.abs(pixels(result.png) - pixels(single.png)).max() <= 1  # float noise may flip one level


def test_results_cross_the_handle_as_encoded_bytes(sdxl):
    result = sdxl.generate.remote(image_request(99)).result()
    assert isinstance(result.png, bytes) and result.png.startswith(b"\x89PNG")
    assert len(pickle.dumps(result)) < len(result.png) + 4096


def test_progress_reaches_the_task_record(sdxl, redis_url):
    store = redis.Redis.from_url(redis_url)
    store.hset(task_key("task-progress"), mapping={"id": "task-progress", "status": "running"})
    sdxl.generate.remote(image_request(5, steps=3), task_id="task-progress").result()
    record = store.hgetall(task_key("task-progress"))
    assert float(record[b"progress"]) == 1.0 and record[b"stage"] == b"denoising"
    store.hset(task_key("task-finished"), mapping={"id": "task-finished", "status": "succeeded", "stage": "succeeded"})
    sdxl.generate.remote(image_request(5, steps=3), task_id="task-finished").result()
    assert store.hget(task_key("task-finished"), "stage") == b"succeeded"  # a finished task's record stays as it is


def test_a_task_cancelled_before_its_batch_runs_costs_no_step(sdxl, redis_url):
    store = redis.Redis.from_url(redis_url)
    store.hset(task_key("task-cancelled-early"), "status", "cancelled")
    store.hset(task_key("task-live"), mapping={"id": "task-live", "status": "running"})
    early = sdxl.generate.remote(image_request(6, steps=3), task_id="task-cancelled-early")
    live = sdxl.generate.remote(image_request(7, steps=3), task_id="task-live")
    with pytest.raises(Cancelled, match="before it started"):
        early.result()
    assert live.result().seed == 7  # its batch neighbour still runs
    assert store.hget(task_key("task-cancelled-early"), "progress") is None  # not one step was run for it
    assert float(store.hget(task_key("task-live"), "progress")) == 1.0


def test_batch_size_changes_through_user_config_without_restart(ray_serve, redis_url, sdxl):
    before = wait_for_batching(ray_serve, 8)
    deploy_config(redis_url, {**BATCHING, "max_batch_size": 2}, ONE)
    after = wait_for_batching(ray_serve, 2)
    assert after["replica"] == before["replica"]  # same replica: reconfigured, not restarted
    results = asyncio.run(concurrently(sdxl, [image_request(seed) for seed in range(8)]))
    assert max(r.metadata.batch_size for r in results) == 2


def test_autoscaling_scales_up_under_load_and_down_when_idle(ray_serve, redis_url, sdxl):
    fast = Autoscaling(min_replicas=1, max_replicas=2, target_ongoing_requests=1, upscale_delay_s=0.5,
                       downscale_delay_s=2.0, metrics_interval_s=0.5, look_back_period_s=1.0)
    deploy_config(redis_url, {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}, fast)
    wait_for_batching(ray_serve, 1)
    assert running_replicas(ray_serve) == 1

    async def one(seed: int) -> None:
        assert (await sdxl.generate.remote(image_request(seed, steps=8))).png.startswith(b"\x89PNG")

    async def load_until_scaled() -> int:
        """Six requests in flight (six times the target) until a second replica runs: a steady load, not a queue
        that grows while the replica starts and has to drain afterwards."""
        peak, deadline, seed, running = 1, time.monotonic() + 90, 0, set()
        while time.monotonic() < deadline and peak < 2:
            for _ in range(6 - len(running)):
                running.add(asyncio.create_task(one(seed)))
                seed += 1
            await asyncio.sleep(0.5)
            for task in [task for task in running if task.done()]:
                task.result()  # a failed request fails the test
                running.discard(task)
            peak = max(peak, running_replicas(ray_serve))
        await asyncio.gather(*running)
        return peak

    assert asyncio.run(load_until_scaled()) == 2
    wait_for_replicas(ray_serve, 1, timeout_s=60)


def test_unhealthy_replica_is_replaced_while_requests_keep_succeeding(ray_serve, redis_url, sdxl):
    """A request Serve had already handed to the drained replica when its graceful window ended dies with it (Serve
    retries only what a replica rejects): the task runner retries such a request, so this loop does too, once."""
    deploy_config(redis_url, BATCHING, Autoscaling(min_replicas=2, max_replicas=2))
    wait_for_replicas(ray_serve, 2)
    replicas_before = {sdxl.info.remote().result()["replica"] for _ in range(20)}
    drained = sdxl.mark_unhealthy.remote("test drain").result()
    deadline, served, cut_off = time.monotonic() + 120, 0, 0
    while time.monotonic() < deadline:
        try:
            result = sdxl.generate.remote(image_request(served)).result()
        except ray.exceptions.ActorDiedError as exc:
            assert drained in str(exc) and cut_off == 0  # only the drained replica, and only once
            cut_off += 1
            continue
        assert result.png.startswith(b"\x89PNG")
        served += 1
        replicas_now = {sdxl.info.remote().result()["replica"] for _ in range(10)}
        if drained not in replicas_now and len(replicas_now - replicas_before) >= 1:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"replica {drained} was not replaced")
    assert served >= 1
