"""Small statistics shared by the benchmarks."""
from __future__ import annotations

import numpy as np


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50 / p99 (milliseconds) and the sample count."""
    return {"p50_ms": round(float(np.percentile(samples_ms, 50)), 2),
            "p99_ms": round(float(np.percentile(samples_ms, 99)), 2), "n": len(samples_ms)}


def median(samples: list[float]) -> float:
    return float(np.median(samples))


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3)
