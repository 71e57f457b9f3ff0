"""The real app code in-process (ASGI) over the session's real deployments and Redis, with auth required."""
import asyncio

import httpx

from composition.api import create_api
from composition.services import build_services
from composition.workflows.registry import build_workflows
from config.app import AppArgs
from config.composition import AccessArgs, CompositionArgs, TierArgs
from config.specs import SPECS

TIERS = {"tight": TierArgs(lane="low", daily={"images": 7}, rate_per_s=1000, burst=1000),
         "slow": TierArgs(lane="normal", rate_per_s=0.5, burst=2),
         "pro": TierArgs(lane="high", rate_per_s=1000, burst=1000),
         "ops": TierArgs(lane="high", rate_per_s=1000, burst=1000, admin=True)}
FAMILIES = {key: spec.deployment_name for key, spec in SPECS.items()}


def services_for(redis_url: str, asset_dir, auth: str = "required"):
    from ray import serve

    handles = {key: serve.get_deployment_handle(name, "montage") for key, name in FAMILIES.items()}
    defaults = {key: family.args.defaults for key, family in AppArgs().families().items()}
    args = CompositionArgs(asset_dir=asset_dir, access=AccessArgs(auth=auth, tiers=TIERS))
    return build_services(args, redis_url, handles, defaults, serve.get_deployment_handle("TaskRunner", "montage"))


def scenario(redis_url: str, asset_dir, steps):
    """Runs `steps(client, services)` in one event loop against the app, in-process, with auth required."""
    async def run():
        services = services_for(redis_url, asset_dir)
        transport = httpx.ASGITransport(app=create_api(services, build_workflows(services)))
        async with httpx.AsyncClient(transport=transport, base_url="http://montage") as client:
            return await steps(client, services)
    return asyncio.run(run())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
