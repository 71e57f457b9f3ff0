"""The ingress deployment and `build_app`, the typed application builder used by serve configs."""
from __future__ import annotations

import asyncio
import os
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.deployment import Application
from ray.serve.handle import DeploymentHandle

from composition import errors
from config.app import AppArgs
from deployments.builder import bind, bind_families

VERSION = "0.1.0"
READY_TIMEOUT_S = 5.0


def create_api() -> FastAPI:
    api = FastAPI(title="Montage", version=VERSION)
    errors.install(api)
    return api


api = create_api()


@serve.ingress(api)
class Ingress:
    """Routes HTTP to workflows over the family handles and Redis."""

    def __init__(self, handles: dict[str, DeploymentHandle], redis_url: str | None) -> None:
        self.handles = handles
        self.redis = aioredis.Redis.from_url(redis_url) if redis_url else None

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready")
    async def ready(self) -> JSONResponse:
        checks = await asyncio.gather(self._redis_ready(), *(self._family_ready(h) for h in self.handles.values()))
        report = dict(zip(["redis", *self.handles], checks, strict=True))
        ok = all(check["ok"] for check in checks)
        return JSONResponse({"ready": ok, "checks": report}, status_code=200 if ok else 503)

    @api.get("/v1/info")
    async def info(self) -> dict[str, Any]:
        infos = await asyncio.gather(*(h.info.remote() for h in self.handles.values()), return_exceptions=True)
        models = {key: (value if isinstance(value, dict) else {"error": type(value).__name__})
                  for key, value in zip(self.handles, infos, strict=True)}
        return {"version": VERSION, "models": models}

    async def _redis_ready(self) -> dict[str, Any]:
        if self.redis is None:
            return {"ok": False, "error": "REDIS_URL not configured"}
        try:
            await asyncio.wait_for(self.redis.ping(), READY_TIMEOUT_S)
            return {"ok": True}
        except Exception as exc:  # any failure means not ready
            return {"ok": False, "error": type(exc).__name__}

    @staticmethod
    async def _family_ready(handle: DeploymentHandle) -> dict[str, Any]:
        try:
            return {"ok": True, **await asyncio.wait_for(handle.info.remote(), READY_TIMEOUT_S)}
        except Exception as exc:
            return {"ok": False, "error": type(exc).__name__}


def build_app(args: dict[str, Any]) -> Application:
    """serve config `args:` → AppArgs → bound deployments → ingress."""
    app_args = AppArgs.model_validate(args or {})
    redis_url = app_args.redis_url or os.environ.get("REDIS_URL")
    handles = bind_families(app_args, redis_url)
    return bind(Ingress, "Ingress", app_args.ingress, handles, redis_url)
