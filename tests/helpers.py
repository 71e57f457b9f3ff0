"""Small builders shared by tests."""
from __future__ import annotations

import os

# The suite's ports, moved by MONTAGE_TEST_PORT_OFFSET so that two suites can run on one machine at once, and by 300
# more per pytest-xdist worker (gw0, gw1, ...) so that the workers of one parallel run can (see lanes.py)
PORT_OFFSET = (int(os.environ.get("MONTAGE_TEST_PORT_OFFSET", "0"))
               + 300 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")))
SERVE_PORT = 18000 + PORT_OFFSET  # Serve's HTTP proxy in tests (`montage up` uses 8000)
BASE = f"http://127.0.0.1:{SERVE_PORT}"
METRICS_PORT = 18080 + PORT_OFFSET  # Ray's Prometheus endpoint in tests (`montage up` uses 8080)
DASHBOARD_PORT = 18265 + PORT_OFFSET  # Ray's dashboard (and state API) in tests
VIRTUAL_GPUS = 1  # the test Ray's GPUs: fractional placement schedules as on a GPU node

import contextlib
import io
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from PIL import Image


def png(width: int = 64, height: int = 64, seed: int = 0, mode: str = "RGB") -> bytes:
    """A random-noise image encoded as PNG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


def meta_params(factory) -> float:
    """Parameter count in billions of a module built on the meta device (no memory, no init cost)."""
    import torch

    with torch.device("meta"):
        module = factory()
    return sum(p.numel() for p in module.parameters()) / 1e9


def decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def pixels(data: bytes) -> np.ndarray:
    """An image's RGB pixels as int16 (differences do not wrap around)."""
    return np.asarray(decode_png(data).convert("RGB"), dtype=np.int16)


def upload(client, image: bytes, user_id: str | None = None) -> str:
    """POST /v1/assets; the new asset's id."""
    params = {"user_id": user_id} if user_id else {}
    response = client.post("/v1/assets", files={"file": ("in.png", image, "image/png")}, params=params)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_task(client, task_id: str, timeout_s: float = 240) -> dict:
    """Polls GET /v1/tasks/{id} until the task is terminal."""
    deadline = time.monotonic() + timeout_s
    while (task := client.get(f"/v1/tasks/{task_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, task
        time.sleep(0.3)
    return task


def wait_quiet(client, timeout_s: float = 120) -> None:
    """Polls /v1/tasks/stats until no task is queued or running: earlier tests' work has left the replicas, so the
    next job runs alone (a job fused with others may differ from its solo run by a level)."""
    deadline = time.monotonic() + timeout_s
    while (live := client.get("/v1/tasks/stats").json()["by_status"])["queued"] + live["running"]:
        assert time.monotonic() < deadline, live
        time.sleep(0.2)


def slow_video(client, seed: int, steps: int = 40) -> str:
    """An SVD task (202) on a fresh upload, slow enough (`steps`) to be caught running."""
    image = upload(client, png(64, 64, seed=seed))
    response = client.post("/v1/videos/generations", json={"image": image, "model": "svd", "num_frames": 8,
                                                            "steps": steps, "seed": seed})
    assert response.status_code == 202
    return response.json()["task_id"]


def clip_after_earlier_jobs(client, seed: int) -> float:
    """A 2-step 6-frame SVD clip of a fresh upload (a shape no slow clip has, so it joins no running job; nothing
    cached), awaited to its end: by then every SVD job its user submitted before it has left the replica. The
    seconds from its submission to its first step."""
    image = upload(client, png(64, 64, seed=seed))
    submitted = time.monotonic()
    response = client.post("/v1/videos/generations", json={"image": image, "model": "svd", "num_frames": 6,
                                                            "steps": 2, "seed": seed})
    assert response.status_code == 202, response.text
    wait_running(client, response.json()["task_id"])
    began = time.monotonic() - submitted
    assert wait_task(client, response.json()["task_id"])["status"] == "succeeded"
    return began


def wait_running(client, task_id: str, progress: float = 0.0) -> dict:
    """Polls until the task runs with progress above `progress`."""
    deadline = time.monotonic() + 60
    while True:
        task = client.get(f"/v1/tasks/{task_id}").json()
        if task["status"] == "running" and task["progress"] > progress:
            return task
        assert time.monotonic() < deadline and task["status"] in ("queued", "running"), task
        time.sleep(0.05)


def start_local_ray(**options) -> None:
    """`ray.init(address="local", **options)`, tried twice: a start whose raylet never registers (Ray gives up after
    30 s; 3 of ~560 test starts on this 2-core machine, none of them wrote a raylet log) leaves its GCS and dashboard
    running, holding the dashboard's port, so what that start left is killed before the second try."""
    import psutil
    import ray

    for attempt in (1, 2):
        before = {child.pid for child in psutil.Process().children(recursive=True)}
        try:
            ray.init(address="local", **options)
            return
        except Exception as error:
            if attempt == 2 or "timed out during startup" not in str(error):
                raise
        left = [child for child in psutil.Process().children(recursive=True) if child.pid not in before]
        for child in left:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(left, timeout=30)
        ray.shutdown()


@contextlib.contextmanager
def ray_serve_running(tmp_path_factory):
    """A local Ray with virtual GPUs (fractional placement schedules as on a GPU node) and Serve, stopped after; the
    replicas' data folder (the image families' adapters) is its own. Where this process already runs one: that one,
    left running."""
    import ray
    from ray import serve

    if ray.is_initialized():
        yield serve
        return
    # The dashboard serves Ray's state API, through which fault tests find replica processes to kill.
    # address="local": a new cluster, never one that `ray start` (`make run`) left running on this machine.
    start_local_ray(num_cpus=4, num_gpus=VIRTUAL_GPUS, include_dashboard=True, dashboard_port=DASHBOARD_PORT,
                    log_to_driver=False, _metrics_export_port=METRICS_PORT,
                    runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1",
                                              "MONTAGE_DATA_DIR": str(tmp_path_factory.mktemp("data"))}})
    serve.start(http_options={"host": "127.0.0.1", "port": SERVE_PORT})
    try:
        yield serve
    finally:
        serve.shutdown()
        ray.shutdown()


_own_ray: contextlib.ExitStack | None = None  # the Ray that own_ray_serve started, while the modules sharing it run


@pytest.fixture(scope="module", name="ray_serve")
def own_ray_serve(tmp_path_factory):
    """For a module marked `xdist_group` (lanes.py) that imports it: a Ray of its worker's own in place of the
    session's, shared with the next such module and stopped before any other test (`stop_own_ray`, from conftest's
    teardown hook): its worker runs no lane, and an idle cluster costs a tenth of a core."""
    global _own_ray
    from ray import serve

    if _own_ray is None:
        _own_ray = contextlib.ExitStack()
        _own_ray.enter_context(ray_serve_running(tmp_path_factory))
    yield serve


def uses_own_ray(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("xdist_group") is not None and "ray_serve" in item.fixturenames


def stop_own_ray() -> None:
    global _own_ray
    if _own_ray is not None:
        _own_ray.close()
        _own_ray = None


def replica_pids(deployment: str, app: str = "montage") -> list[int]:
    """Process ids of a deployment's live replicas, through Ray's state API."""
    from ray.util.state import list_actors

    actors = list_actors(address=f"http://127.0.0.1:{DASHBOARD_PORT}", detail=True,
                         filters=[("class_name", "=", f"ServeReplica:{app}:{deployment}"), ("state", "=", "ALIVE")])
    return [actor.pid for actor in actors]


def wait_ready(client, timeout_s: float = 90) -> None:
    """Polls /ready until 200: the service recovered by itself (connection errors while replicas restart)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.get("/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"/ready not 200 after {timeout_s:.0f} s"
        time.sleep(0.5)


def s3_emulator(bucket: str):
    """moto's S3 emulator (an emulator, not AWS: a local HTTP server that speaks the S3 protocol, offline) with
    `bucket` created; (server, the standard AWS environment that points a client at it). Stop it with `.stop()`."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "emulator", "AWS_SECRET_ACCESS_KEY": "emulator"}
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                 aws_access_key_id="emulator", aws_secret_access_key="emulator").create_bucket(Bucket=bucket)
    return server, env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver:
    """A real webhook receiver: a threaded HTTP server on 127.0.0.1 that records every POST (headers, body) and
    answers each with the next of `replies` (then 200). Not listening until `start()`."""

    def __init__(self, replies: list[int] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.replies = list(replies or [])
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/montage"

    def accepted(self) -> list[tuple[dict[str, str], bytes, int]]:
        return [hit for hit in self.received if 200 <= hit[2] < 300]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver.replies.pop(0) if receiver.replies else 200
                receiver.received.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def wait(self, accepted: int = 1, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.accepted()) < accepted:
            assert time.monotonic() < deadline, f"{len(self.accepted())} of {accepted} deliveries after {timeout_s} s"
            time.sleep(0.05)


def on_redis(redis_url: str, steps):
    """`await steps(client)` in a new event loop with an async Redis client on `redis_url`, closed after: its result."""
    import asyncio

    import redis.asyncio as aioredis

    async def run():
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await steps(client)
        finally:
            await client.aclose()
    return asyncio.run(run())


def webhook_secret(redis_url: str) -> str:
    """The server's webhook signing secret (auth off), as `montage keys webhook-secret` prints it."""
    from composition.store.webhooks import WebhookStore

    return on_redis(redis_url, lambda client: WebhookStore(client, 0).server_secret())


@contextlib.contextmanager
def chromium_tab(url: str):
    """A headless Chromium tab (Debian's chromium, which `make test` installs) opened on `url`."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium not found: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page()
        tab.goto(url)
        yield tab
        browser.close()


def imported_by(module: str) -> set[str]:
    """The top-level packages that importing `module` loads in a fresh interpreter (the project's own included)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = f"import json, sys; import {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True,
                          cwd=Path(__file__).parents[1])
    return set(json.loads(done.stdout))
