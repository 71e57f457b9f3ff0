"""GET /healthz, /ready (Redis and every deployment), /v1/info."""
from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from composition.deps import ServicesDep

router = APIRouter(tags=["system"])
VERSION = version("montage")  # pyproject.toml's
READY_TIMEOUT_S = 5.0


async def check(awaitable, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
    """`{"ok": True, **result}`, or `{"ok": False, "error": kind}` on any failure or timeout."""
    try:
        found = await asyncio.wait_for(awaitable, timeout_s)
        return {"ok": True, **(found if isinstance(found, dict) else {})}
    except Exception as exc:  # any failure means not ready
        return {"ok": False, "error": type(exc).__name__}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    names = ["redis", "runner", *services.handles]
    checks = await asyncio.gather(check(services.redis.ping()), check(services.runner.status.remote()),
                                  *(check(handle.info.remote()) for handle in services.handles.values()))
    report = dict(zip(names, checks, strict=True))
    ok = all(check["ok"] for check in checks)
    return JSONResponse({"ready": ok, "checks": report}, status_code=200 if ok else 503,
                        headers=None if ok else {"Retry-After": "5"})


@router.get("/v1/info")
async def info(services: ServicesDep) -> dict[str, Any]:
    found = await asyncio.gather(*(check(h.info.remote()) for h in services.handles.values()))
    return {"version": VERSION, "models": dict(zip(services.handles, found, strict=True))}
