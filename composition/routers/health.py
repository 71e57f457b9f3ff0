"""GET /v1/health/detailed (every model's status, device, memory and measured times) and POST /v1/health/warmup
(one smallest request through every family, timed)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter

from composition.auth import AdminDep
from composition.deps import ServicesDep
from composition.routers.system import VERSION, check

router = APIRouter(prefix="/v1/health", tags=["system"])
WARMUP_TIMEOUT_S = 600.0  # a cold family on a GPU may compile first


@router.get("/detailed")
async def detailed(services: ServicesDep) -> dict[str, Any]:
    """Redis, the task runner and every model deployment (one replica each answers), with the models' measured
    generation times and the task counters."""
    families = list(services.handles)
    (server, memory, runner, tasks), infos, costs = await asyncio.gather(
        asyncio.gather(check(services.redis.info("server")), check(services.redis.info("memory")),
                       check(services.runner.status.remote()), services.tasks.stats()),
        asyncio.gather(*(check(services.handles[f].info.remote()) for f in families)),
        asyncio.gather(*(services.timings.get(f) for f in families)))
    models = {family: info | {"generation": vars(cost) if cost else None}
              for family, info, cost in zip(families, infos, costs, strict=True)}
    redis = {"ok": server["ok"] and memory["ok"], "version": server.get("redis_version"),
             "used_memory_bytes": memory.get("used_memory")}
    ok = redis["ok"] and runner["ok"] and all(info["ok"] for info in infos)
    return {"status": "ok" if ok else "degraded", "version": VERSION, "redis": redis, "runner": runner,
            "models": models, "tasks": tasks}


@router.post("/warmup")
async def warmup(services: ServicesDep, _: AdminDep) -> dict[str, Any]:
    """The smallest request of every family (64², one step; a short prompt) through each deployment's batch queue;
    each family's time and the replica that ran it."""
    started = time.monotonic()
    families = list(services.handles)
    found = await asyncio.gather(*(check(services.handles[f].probe.remote(), WARMUP_TIMEOUT_S) for f in families))
    return {"ok": all(result["ok"] for result in found), "ms": round((time.monotonic() - started) * 1000.0, 1),
            "models": dict(zip(families, found, strict=True))}
