"""Prometheus metrics of the ingress and the task runners (exported by Ray, prefixed `ray_`)."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from ray.util import metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.metrics import MS_BOUNDARIES


@dataclass(frozen=True)
class ServiceMetrics:
    requests: metrics.Counter
    request_ms: metrics.Histogram
    cache: metrics.Counter
    dedup: metrics.Counter
    reuse: metrics.Counter
    gpu_seconds: metrics.Counter
    tasks_finished: metrics.Counter
    task_ms: metrics.Histogram
    tasks: metrics.Gauge


@functools.cache
def service_metrics() -> ServiceMetrics:
    """Created once per process, on first use."""
    return ServiceMetrics(
        requests=metrics.Counter("montage_requests", "HTTP requests by route and status",
                                 ("route", "method", "status")),
        request_ms=metrics.Histogram("montage_request_ms", "HTTP latency by route", MS_BOUNDARIES, ("route",)),
        cache=metrics.Counter("montage_cache", "generation cache lookups: hit or miss", ("result",)),
        dedup=metrics.Counter("montage_dedup", "prompt resolutions: exact, semantic (a merge) or new", ("match",)),
        reuse=metrics.Counter("montage_reuse", "jobs started from a similar prompt's kept latent, by the step",
                              ("family", "step")),
        gpu_seconds=metrics.Counter("montage_gpu_seconds", "device seconds of tasks' model work (each request's "
                                    "share of fused forwards and its own encode/decode; tier \"-\": auth off)", ("family", "tier")),
        tasks_finished=metrics.Counter("montage_tasks_finished", "tasks reaching a terminal status",
                                       ("kind", "status")),
        task_ms=metrics.Histogram("montage_task_duration_ms", "task duration from creation to its end",
                                  MS_BOUNDARIES, ("kind", "status")),
        tasks=metrics.Gauge("montage_tasks", "tasks by status", ("status",)),
    )


class RequestMetrics:
    """ASGI middleware counting every request by its route template (not its path, which would explode
    cardinality); plain ASGI, so it adds no task or stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            instruments = service_metrics()
            instruments.requests.inc(1, {"route": route, "method": scope["method"], "status": str(status)})
            instruments.request_ms.observe((time.perf_counter() - started) * 1000.0, {"route": route})
