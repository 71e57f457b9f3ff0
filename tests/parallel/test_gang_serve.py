"""Gang replicas in real Ray Serve over HTTP, on the CPU (gloo): Wan on 4 ranks (ulysses 2 × cfg 2) and FLUX on 2
(ulysses 2). /v1/info and /v1/health/detailed show every rank; a Wan job moves from a single-process replica to a
gang by its checkpoint, fails over when a rank actor is killed mid-job (the rank takes its gang's replica with it, the
job resumes from its last checkpoint and the gang is rebuilt) and moves back, each time ending with the clip of an
uninterrupted run; beside Wan's gang, a FLUX gang serves images. Every deploy restarts the whole app (its args
change), so Wan starts single-process and FLUX runs only beside Wan's gang: the module builds Wan's gang twice (a
start, a rebuild) and FLUX's once. (A fresh job on a gang equals the single process: test_gang_ranks.py.)"""
from __future__ import annotations

import os
import signal

import httpx
import numpy as np
import pytest
from apps import deploy_config
from helpers import BASE, own_ray_serve, png, replica_pids, upload, wait_task  # noqa: F401 (its Ray)
from reliability.test_step_resume import Events

from models.media import decode_mp4

pytestmark = pytest.mark.xdist_group("gangs")  # an app of its own, minutes long: off the Ray lane (lanes.py)
STEPS = 40  # a job interrupted past step 5 has 35 left: it outlasts a redeploy's request to Serve; checkpoints every 5
WAN_GANG = {"ulysses": 2, "cfg": 2}
FLUX_GANG = {"ulysses": 2}
# Only the families under test; whole-CPU ranks (no GPU share: a gang takes whole GPUs or none), one replica each.
DEPLOYMENT = {"num_gpus": 0, "num_cpus": 0.1, "autoscaling": {"min_replicas": 1, "max_replicas": 1},
              "batching": {"max_batch_size": 4, "batch_wait_timeout_s": 0.0}}
OFF = {"enabled": False}


@pytest.fixture(scope="module")
def app(ray_serve, redis_url, tmp_path_factory):
    """Deploys the app with Wan's layout `parallel` and waits until it runs (unless not `wait`): FLUX runs, as a
    gang, only beside a Wan gang; Wan starts single-process. No embedder: no dedup."""
    asset_dir = tmp_path_factory.mktemp("assets")

    def deploy(wan_parallel: dict, wait: bool = True) -> None:
        flux = {"enabled": bool(wan_parallel), "deployment": DEPLOYMENT}
        deploy_config(ray_serve, redis_url, asset_dir, {"wan": {"device": "cpu", "parallel": wan_parallel},
                                                        "flux": {"device": "cpu", "parallel": FLUX_GANG,
                                                                 "adapters": {"max_per_request": 0}}},
                      {"sdxl": OFF, "svd": OFF, "llm": OFF, "embedder": OFF, "wan": {"deployment": DEPLOYMENT},
                       "flux": flux}, wait=wait)

    deploy({})
    yield deploy
    ray_serve.delete("montage")


@pytest.fixture(scope="module")
def client(app):
    with httpx.Client(base_url=BASE, timeout=120) as session:
        yield session


@pytest.fixture(scope="module")
def reference(client) -> np.ndarray:
    """The clip of an uninterrupted run of seed 41 on the single-process Wan replica, the layout each test starts and
    ends on."""
    return frames(client, video(client, seed=41, wait_s=600))


def ranks(client, family: str) -> list[dict]:
    return client.get("/v1/info").json()["models"][family]["parallel"]["ranks"]


def video(client, seed: int, wait_s: float) -> dict:
    image = upload(client, png(64, 64, seed=seed))
    response = client.post("/v1/videos/generations", json={
        "image": image, "model": "wan", "num_frames": 5, "width": 80, "height": 64, "steps": STEPS, "seed": seed,
        "gif": False, "wait_s": wait_s})
    assert response.status_code == (200 if wait_s else 202), response.text
    return response.json()


def frames(client, result: dict) -> np.ndarray:
    return decode_mp4(client.get(result["video"]["url"]).content)


def interrupted(client, redis_url, seed: int, interrupt) -> dict:
    """A job of `seed` whose run is interrupted by `interrupt()` once it checkpointed at step 5 or later; its task,
    resumed from a checkpoint (not from step 0)."""
    task_id = video(client, seed, wait_s=0)["task_id"]
    events = Events(redis_url, task_id)
    try:
        events.wait(lambda e: e.get("event") == "checkpoint" and e["step"] >= 5, timeout_s=600)
        interrupt()
        task = wait_task(client, task_id, timeout_s=900)
    finally:
        events.close()
    assert task["status"] == "succeeded", task
    assert task["result"]["metadata"]["resumed_from_step"] >= 5
    return task


def redeployed(app, wan_parallel: dict):
    """Asks Serve for Wan's layout `wan_parallel`, then kills the running Wan replica (its gang's ranks with it): the
    job it ran resumes from its checkpoint and ends on a replica of the new layout. (The new app still builds when the
    kill lands, so Serve first replaces the replica with one of the old layout, which takes the job and hands it on
    when Serve stops it: the tiny job would end before the build does.)"""
    def interrupt() -> None:
        running = replica_pids("Wan")
        app(wan_parallel, wait=False)
        for pid in running:
            os.kill(pid, signal.SIGKILL)

    return interrupt


def shows_every_rank(client, family: str, degree: int) -> None:
    """/v1/info and /v1/health/detailed show each of a gang's `degree` ranks, a process each."""
    info = client.get("/v1/info").json()["models"][family]
    assert info["parallel"] | {"ranks": None} == {"ulysses": 2, "ring": 1, "cfg": degree // 2,
                                                  "placement": "STRICT_PACK", "ranks": None}
    found = info["parallel"]["ranks"]
    assert [r["rank"] for r in found] == list(range(degree))
    assert all(r["device"] == "cpu" and r["memory"]["resident"] > 0 for r in found)
    assert len({r["pid"] for r in found}) == degree  # a process per rank
    detailed = client.get("/v1/health/detailed").json()["models"][family]
    assert len(detailed["parallel"]["ranks"]) == degree


def flux_image(client) -> None:
    body = {"prompt": "a red fox in snow", "model": "flux", "width": 64, "height": 64, "steps": 2, "seed": 4,
            "wait_s": 240}
    response = client.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["url"]


def test_a_wan_job_moves_to_a_gang_beside_a_flux_gang_fails_over_a_killed_rank_and_moves_back(client, redis_url, app,
                                                                                           reference):
    assert "parallel" not in client.get("/v1/info").json()["models"]["wan"]
    to_gang = interrupted(client, redis_url, 41, redeployed(app, WAN_GANG))
    shows_every_rank(client, "wan", 4)
    assert np.array_equal(frames(client, to_gang["result"]), reference)
    shows_every_rank(client, "flux", 2)
    flux_image(client)
    from cluster.status_cli import collect, render

    rows = {row["deployment"]: row for row in collect() if row["app"] == "montage"}
    assert {name: rows[name]["ranks"] for name in ("Wan", "Flux", "Ingress")} == {"Wan": 4, "Flux": 2, "Ingress": 1}
    header, *lines, _ = render(list(rows.values())).splitlines()
    assert header.split()[5] == "ranks" and {line.split()[1]: line.split()[5] for line in lines}["Wan"] == "4"

    before = ranks(client, "wan")
    failed_over = interrupted(client, redis_url, 41, lambda: os.kill(before[1]["pid"], signal.SIGKILL))
    assert np.array_equal(frames(client, failed_over["result"]), reference)
    after = ranks(client, "wan")
    assert len(after) == 4 and {r["pid"] for r in after}.isdisjoint(r["pid"] for r in before)

    to_single = interrupted(client, redis_url, 41, redeployed(app, {}))
    assert "parallel" not in client.get("/v1/info").json()["models"]["wan"]
    assert "flux" not in client.get("/v1/info").json()["models"]
    assert np.array_equal(frames(client, to_single["result"]), reference)
