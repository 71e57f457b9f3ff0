"""Serving overhead: one SDXL text-to-image request through HTTP → ingress → task → deployment, against the same
request on the same tiny pipeline called in this process (same torch thread count as the replica).

The two are interleaved (alternating which goes first), so machine noise hits both. Every request has a unique
prompt and seed, so dedup and the variant cache never answer it: the server renders every one.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx

from bench.inprocess import tiny_sdxl
from bench.stats import median, ratio

GUIDANCE = 5.0  # the tiny SDXL default, sent explicitly so both paths run the same request


@dataclass(frozen=True)
class Size:
    name: str
    side: int
    steps: int


TINY = Size("64² 2 steps", 64, 2)  # the tiny default: the model runs ~0.2 s, so fixed serving costs dominate
HEAVY = Size("128² 2 steps", 128, 2)  # ~1 s of model time on one CPU thread, the scale real models run at
SIZES = (TINY, HEAVY)


def _request(size: Size, index: int) -> dict:
    return dict(prompt=f"a lighthouse at dusk, probe {uuid.uuid4().hex[:12]}", seed=1_000_000 + index,
                width=size.side, height=size.side, steps=size.steps, guidance=GUIDANCE)


def _served(client: httpx.Client, body: dict) -> tuple[float, float, float]:
    """(end-to-end ms, batch-queue ms and model ms inside the replica) of one request that waits for its image."""
    started = time.perf_counter()
    response = client.post("/v1/images/generations", json=body | {"wait_s": 300})
    elapsed = (time.perf_counter() - started) * 1000.0
    response.raise_for_status()
    metadata = response.json()["images"][0]["metadata"]
    return elapsed, float(metadata["queue_ms"]), float(metadata["run_ms"])


def _direct(model, body: dict) -> float:
    from models.types import ImageRequest

    started = time.perf_counter()
    model.generate([ImageRequest(**body)])
    return (time.perf_counter() - started) * 1000.0


def measure(client: httpx.Client, model, size: Size, pairs: int) -> dict:
    """`pairs` interleaved (served, in-process) measurements after one warm-up of each."""
    _served(client, _request(size, -1))
    _direct(model, _request(size, -1))
    served: list[tuple[float, float, float]] = []
    direct: list[float] = []
    for index in range(pairs):
        body = _request(size, index)
        if index % 2:
            direct.append(_direct(model, body))
        served.append(_served(client, body))
        if not index % 2:
            direct.append(_direct(model, body))
    elapsed, queue_ms, run_ms = (median(list(column)) for column in zip(*served))
    return dict(size=size.name, pairs=pairs, served_ms=round(elapsed, 1), direct_ms=round(median(direct), 1),
                replica_queue_ms=round(queue_ms, 1), replica_model_ms=round(run_ms, 1),
                ratio=ratio(elapsed, median(direct)))


def run(url: str, threads: int, pairs: int) -> list[dict]:
    """Overhead at every size; `threads` is the replica's torch thread count, used here too."""
    with tiny_sdxl(threads) as model, httpx.Client(base_url=url, timeout=600) as client:
        return [measure(client, model, size, pairs) for size in SIZES]
