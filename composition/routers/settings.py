"""GET and PATCH /v1/config: each model deployment's batching (size and wait), changed at runtime through Serve's
`user_config`; admin keys only when auth is on."""
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter

from composition.auth import AdminDep
from composition.deps import ServicesDep
from composition.routers.system import check
from composition.runtime_config import ConfigPatch, RuntimeConfig, apply, read, settled
from config.specs import SPECS

router = APIRouter(prefix="/v1/config", tags=["system"])
SETTLE_S, SETTLE_POLL_S = 30.0, 0.2


def _names(services) -> dict[str, str]:
    return {family: SPECS[family].deployment_name for family in services.handles}


@router.get("")
async def get_config(services: ServicesDep, _: AdminDep) -> RuntimeConfig:
    """The configured batching of every model deployment and what one of its replicas applies now."""
    config = await asyncio.to_thread(read, services.app_name, _names(services))
    applied = await asyncio.gather(*(check(services.handles[f].batching.remote()) for f in config.deployments))
    for settings, found in zip(config.deployments.values(), applied, strict=True):
        settings.applied = found
    return config


@router.patch("")
async def patch_config(body: ConfigPatch, services: ServicesDep, principal: AdminDep) -> RuntimeConfig:
    """Changes batch size or wait of the named deployments; answers once Serve holds the new config (its replicas
    apply it within seconds, without a restart: see each deployment's `applied`)."""
    names = _names(services)
    targets = await asyncio.to_thread(apply, services.app_name, names, body)
    deadline = time.monotonic() + SETTLE_S
    while not settled(await asyncio.to_thread(read, services.app_name, names), targets) and \
            time.monotonic() < deadline:
        await asyncio.sleep(SETTLE_POLL_S)
    return await get_config(services, principal)
