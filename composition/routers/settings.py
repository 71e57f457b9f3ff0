"""GET and PATCH /v1/config: each model deployment's batching (size and wait), changed at runtime through Serve's
`user_config`; admin keys only when auth is on."""
from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import APIRouter
from redis.exceptions import LockError

from composition.auth import AdminDep
from composition.deps import ServicesDep
from composition.errors import ApiError
from composition.routers.system import check
from composition.runtime_config import ConfigPatch, RuntimeConfig, apply, read, settled
from config import keys
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
    apply it within seconds, without a restart: see each deployment's `applied`). Changes take turns across the
    ingress replicas (a Redis lock): each reads the config the one before it wrote, so none is lost."""
    names = _names(services)
    turn = services.redis.lock(keys.config_lock(), timeout=2 * SETTLE_S, blocking_timeout=2 * SETTLE_S)
    if not await turn.acquire():
        raise ApiError(503, "busy", "other config changes are still settling: try again",
                       headers={"Retry-After": str(int(SETTLE_S))})
    try:
        targets = await asyncio.to_thread(apply, services.app_name, names, body)
        deadline = time.monotonic() + SETTLE_S
        while not settled(await asyncio.to_thread(read, services.app_name, names), targets) and \
                time.monotonic() < deadline:
            await asyncio.sleep(SETTLE_POLL_S)
    finally:
        with contextlib.suppress(LockError):  # held past its timeout: another change went on
            await turn.release()
    return await get_config(services, principal)
