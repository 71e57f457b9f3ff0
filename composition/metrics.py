"""Prometheus metrics of the ingress and the task runners (exported by Ray, prefixed `ray_`)."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from ray.util import metrics

from deployments.metrics import MS_BOUNDARIES


@dataclass(frozen=True)
class ServiceMetrics:
    requests: metrics.Counter
    request_ms: metrics.Histogram
    cache: metrics.Counter
    dedup: metrics.Counter
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
        tasks_finished=metrics.Counter("montage_tasks_finished", "tasks reaching a terminal status",
                                       ("kind", "status")),
        task_ms=metrics.Histogram("montage_task_duration_ms", "task duration from creation to its end",
                                  MS_BOUNDARIES, ("kind", "status")),
        tasks=metrics.Gauge("montage_tasks", "tasks by status", ("status",)),
    )


def install(app: FastAPI) -> None:
    """Counts every request by its route template (not its path, which would explode cardinality)."""

    @app.middleware("http")
    async def count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        instruments = service_metrics()
        instruments.requests.inc(1, {"route": route, "method": request.method, "status": str(response.status_code)})
        instruments.request_ms.observe((time.perf_counter() - started) * 1000.0, {"route": route})
        return response
