"""Prometheus metrics of the model deployments (exported by Ray next to Serve's own, prefixed `ray_`)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ray.util import metrics

BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64]
MS_BOUNDARIES = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]


@dataclass(frozen=True)
class DeploymentMetrics:
    batch_size: metrics.Histogram
    queue_ms: metrics.Histogram
    run_ms: metrics.Histogram
    gpu_memory: metrics.Gauge
    adapter_events: metrics.Counter


@functools.cache
def deployment_metrics() -> DeploymentMetrics:
    """Created once per process, on first use (inside a replica)."""
    tags = ("deployment",)
    return DeploymentMetrics(
        batch_size=metrics.Histogram("montage_batch_size", "requests per model call", BATCH_SIZES, tags),
        queue_ms=metrics.Histogram("montage_queue_wait_ms", "time a request waited for its batch", MS_BOUNDARIES,
                                   tags),
        run_ms=metrics.Histogram("montage_model_run_ms", "time of one grouped model call", MS_BOUNDARIES, tags),
        gpu_memory=metrics.Gauge("montage_gpu_memory_bytes", "GPU memory allocated by the replica's model", tags),
        adapter_events=metrics.Counter("montage_adapter_events", "LoRA adapter loads, hits and evictions",
                                       ("deployment", "event")),
    )
