"""The real app code in-process (ASGI, or over HTTP on its own port) over the session's real deployments and Redis,
with auth required."""
import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import httpx2
from helpers import free_port, on_redis
from openai import AsyncOpenAI

from composition.api import create_api
from composition.services import build_services
from composition.store.access import AccessStore
from composition.workflows.registry import build_workflows
from config.app import AppArgs
from config.composition import AccessArgs, CompositionArgs, TierArgs
from config.specs import SPECS

TIERS = {"tight": TierArgs(lane="low", daily={"images": 7}, rate_per_s=1000, burst=1000),
         "slow": TierArgs(lane="normal", rate_per_s=0.5, burst=2),
         "pro": TierArgs(lane="high", rate_per_s=1000, burst=1000),
         "heavy": TierArgs(lane="normal", weight=3.0, rate_per_s=1000, burst=1000),
         "ops": TierArgs(lane="high", rate_per_s=1000, burst=1000, admin=True),
         "metered": TierArgs(lane="normal", daily_gpu_seconds=1e-6, rate_per_s=1000, burst=1000)}
FAMILIES = {key: spec.deployment_name for key, spec in SPECS.items()}


def services_for(redis_url: str, asset_dir, auth: str = "required", **composition):
    """Services as an ingress replica builds them, with auth `auth` and `composition` args over the defaults."""
    from ray import serve

    handles = {key: serve.get_deployment_handle(name, "montage") for key, name in FAMILIES.items()}
    defaults = {key: family.args.defaults for key, family in AppArgs().families().items()}
    args = CompositionArgs(asset_dir=asset_dir, access=AccessArgs(auth=auth, tiers=TIERS), **composition)
    return build_services(args, redis_url, handles, defaults, serve.get_deployment_handle("TaskRunner", "montage"))


def app_for(redis_url: str, asset_dir, **composition):
    """(services, the FastAPI app) as an ingress replica builds them, auth required; call inside the event loop."""
    services = services_for(redis_url, asset_dir, **composition)
    return services, create_api(services, build_workflows(services))


def scenario(redis_url: str, asset_dir, steps):
    """Runs `steps(client, services)` in one event loop against the app, in-process, with auth required."""
    async def run():
        services, app = app_for(redis_url, asset_dir)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://montage") as client:
            return await steps(client, services)
    return asyncio.run(run())


def openai_scenario(redis_url: str, asset_dir, steps, **composition):
    """Runs `steps(connect, services)` as `scenario` does, with `composition` args; `connect(key)` is the official
    `AsyncOpenAI` client on the in-process app with `key` as its API key (no retries)."""
    async def run():
        services, app = app_for(redis_url, asset_dir, **composition)
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://montage") as http:
            def connect(key: str) -> AsyncOpenAI:
                return AsyncOpenAI(base_url="http://montage/openai/v1", api_key=key, http_client=http, max_retries=0)
            return await steps(connect, services)
    return asyncio.run(run())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def served(redis_url: str, asset_dir, **composition) -> Iterator[str]:
    """The app of `app_for` served over real HTTP by uvicorn on a free port (a browser can reach it), in a thread with
    its own event loop; yields its base URL."""
    import uvicorn

    port, box = free_port(), {}

    async def run() -> None:
        _, app = app_for(redis_url, asset_dir, **composition)
        box["server"] = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                      lifespan="off"))
        await box["server"].serve()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (box.get("server") and box["server"].started):
        assert thread.is_alive() and time.monotonic() < deadline, "the secured app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        box["server"].should_exit = True
        thread.join(30)


def access(redis_url: str, action):
    """Runs `await action(AccessStore)` on its own connection (keys made or revoked outside an app)."""
    return on_redis(redis_url, lambda client: action(AccessStore(client)))
