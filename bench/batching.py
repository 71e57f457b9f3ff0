"""Batching gain: images/s with 16 concurrent clients against one client at a time, through Montage and through
the naive single-process server, on the tiny SDXL default request (64², 2 steps).

Rounds interleave the four (server, clients) modes, rotating their order, so noise spreads over all of them. Every
request has a unique prompt and seed: nothing is served from a cache. `pipeline_gain` is the ceiling: what one
pipeline call on a full batch gains over single calls in this process, with no serving at all.
"""
from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field

import httpx

from bench.inprocess import tiny_sdxl
from bench.stats import ratio

CLIENTS = 16


@dataclass(frozen=True)
class Target:
    """A server under test: where to POST, and what every body carries besides a unique prompt and seed."""

    name: str
    url: str
    path: str
    extra: dict = field(default_factory=dict)

    def body(self, index: int) -> dict:
        return {"prompt": f"a paper boat on a pond, probe {uuid.uuid4().hex[:12]}", "seed": 2_000_000 + index,
                **self.extra}


@dataclass
class Tally:
    """What one (server, clients) mode did over all its rounds."""

    seconds: float = 0.0
    images: int = 0
    replicas: set[str] = field(default_factory=set)
    batch_sizes: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        summary = {"images_per_s": round(self.images / self.seconds, 2), "images": self.images}
        if self.batch_sizes:  # Montage only
            summary |= {"replicas": len(self.replicas),
                        "mean_batch": round(sum(self.batch_sizes) / len(self.batch_sizes), 2)}
        return summary


async def _round(target: Target, clients: int, requests: int, indices: itertools.count, tally: Tally) -> None:
    """`requests` images with `clients` in flight; Montage answers name the replica and batch size of each."""
    left = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=target.url, timeout=600, limits=limits) as client:
        async def worker() -> None:
            for _ in left:
                response = await client.post(target.path, json=target.body(next(indices)))
                response.raise_for_status()
                if response.headers["content-type"].startswith("application/json"):
                    for image in response.json()["images"]:
                        tally.replicas.add(image["metadata"]["replica"])
                        tally.batch_sizes.append(image["metadata"]["batch_size"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        tally.seconds += time.perf_counter() - started
        tally.images += requests


def run(montage_url: str, naive_url: str, rounds: int, sequential: int, concurrent: int) -> dict:
    """images/s per (server, clients) over `rounds` interleaved rounds, after an unmeasured warm-up round each."""
    targets = [Target("montage", montage_url, "/v1/images/generations", {"wait_s": 300}),
               Target("naive", naive_url, "/generate")]
    modes = [(target, clients) for target in targets for clients in (1, CLIENTS)]
    tallies = {(target.name, clients): Tally() for target, clients in modes}
    indices = itertools.count()
    for target in targets:
        asyncio.run(_round(target, CLIENTS, CLIENTS, indices, Tally()))
    for number in range(rounds):
        shift = number % len(modes)
        for target, clients in modes[shift:] + modes[:shift]:
            count = concurrent if clients > 1 else sequential
            asyncio.run(_round(target, clients, count, indices, tallies[(target.name, clients)]))
    rate = {key: tally.images / tally.seconds for key, tally in tallies.items()}
    return {"clients": CLIENTS, "rounds": rounds,
            **{f"{name}_{clients}": tally.summary() for (name, clients), tally in tallies.items()},
            "montage_gain": ratio(rate[("montage", CLIENTS)], rate[("montage", 1)]),
            "naive_gain": ratio(rate[("naive", CLIENTS)], rate[("naive", 1)]),
            "montage_vs_naive": ratio(rate[("montage", CLIENTS)], rate[("naive", CLIENTS)])}


def pipeline_gain(threads: int, batch: int, reps: int) -> dict:
    """images/s of the tiny SDXL pipeline in-process, `batch` requests in one call vs one call each (interleaved)."""
    from models.types import ImageRequest

    def requests(count: int) -> list[ImageRequest]:
        return [ImageRequest(prompt="a paper boat on a pond", width=64, height=64, steps=2, guidance=5.0, seed=seed)
                for seed in range(count)]

    single = batched = 0.0
    with tiny_sdxl(threads) as model:
        model.generate(requests(batch))
        for _ in range(reps):
            started = time.perf_counter()
            for request in requests(batch):
                model.generate([request])
            single += time.perf_counter() - started
            started = time.perf_counter()
            model.generate(requests(batch))
            batched += time.perf_counter() - started
    return {"batch": batch, "single_images_per_s": round(batch * reps / single, 2),
            "batched_images_per_s": round(batch * reps / batched, 2), "gain": ratio(single, batched)}
