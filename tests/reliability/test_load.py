"""64 concurrent clients over a mixed workload on the tiny models: no errors but deliberate 4xx, no lost task,
p99 latency and replica memory reported, memory growth under 10% after warm-up. LOAD_SECONDS=20 in `make test`;
`make soak` runs 300."""
import asyncio
import json
import os
import random
import time
import uuid
from pathlib import Path

import httpx
import psutil
from helpers import BASE, replica_pids

from bench.stats import percentiles

SECONDS = float(os.environ.get("LOAD_SECONDS", "20"))
CLIENTS = 64
FRESH_PER_S = 2.0  # new generations per second across all clients: the tiny models keep up, so none piles up
DEPLOYMENTS = ("Ingress", "TaskRunner", "SDXL", "Flux", "Embedder")
REPORT = Path("var/reliability")


def replica_rss() -> int:
    """Resident bytes of every replica process of the deployments under load."""
    return sum(psutil.Process(pid).memory_info().rss for name in DEPLOYMENTS for pid in replica_pids(name))


class Mix:
    """The workload: mostly cache hits, plus variants, polls, downloads, fresh generations and bad requests."""

    def __init__(self, client: httpx.AsyncClient, tag: str, prompts: list[str], soul: str, assets: list[str]):
        self.client, self.tag, self.prompts, self.soul, self.assets = client, tag, prompts, soul, assets
        self.tasks: list[str] = []
        self.samples: list[tuple[str, float, int | str]] = []  # (kind, ms, status or exception name)
        self.next_fresh = 0.0

    async def one(self, rng: random.Random) -> None:
        roll = rng.random()
        if roll < 0.55:
            kind, request = "hit", self.client.post("/v1/images/generations", json={"prompt": rng.choice(self.prompts)})
        elif roll < 0.65:
            kind, request = "variant", self.client.get(f"/v1/souls/{self.soul}/image",
                                                       params={"user_id": f"u{rng.randrange(20)}"})
        elif roll < 0.75 and self.tasks:
            kind, request = "poll", self.client.get(f"/v1/tasks/{rng.choice(self.tasks)}")
        elif roll < 0.85:
            kind, request = "download", self.client.get(f"/v1/assets/{rng.choice(self.assets)}")
        elif roll < 0.90 and time.monotonic() >= self.next_fresh:
            self.next_fresh = time.monotonic() + 1 / FRESH_PER_S
            kind, request = "fresh", self.client.post("/v1/images/generations", json={
                "prompt": f"a kite over dunes {self.tag}", "seed": rng.randrange(2**40), "wait_s": 0})
        elif roll < 0.95:
            kind, request = "bad", self.client.post("/v1/images/generations", json={"prompt": "", "n": 99})
        else:
            kind, request = "stats", self.client.get("/v1/tasks/stats")
        started = time.perf_counter()
        try:
            response = await request
        except httpx.HTTPError as exc:
            self.samples.append((kind, (time.perf_counter() - started) * 1000, type(exc).__name__))
            return
        status: int | str = response.status_code
        if kind == "hit" and status == 200 and response.json()["cache_hit"] is not True:
            status = "not a cache hit"
        self.samples.append((kind, (time.perf_counter() - started) * 1000, status))
        if response.status_code in (200, 202) and "x-task-id" in response.headers:
            self.tasks.append(response.headers["x-task-id"])

    async def client_loop(self, index: int, until: float) -> None:
        rng = random.Random(index)
        while time.monotonic() < until:
            await self.one(rng)


def expected(kind: str, status: int | str) -> bool:
    """What each kind of request must answer: auth is off, so nothing is rate limited (no 429), and a request for
    a prompt already rendered is a cache hit."""
    if kind == "bad":
        return status == 422
    if kind in ("hit", "download", "poll", "stats"):
        return status == 200
    return status in (200, 202)


async def run_load() -> dict:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=BASE, timeout=120, limits=limits) as client:
        tag = uuid.uuid4().hex[:8]
        prompts = [f"a glass {thing} on a wooden table {tag}" for thing in ("apple", "bird", "boat", "clock")]
        seeded = await asyncio.gather(*(client.post("/v1/images/generations", json={"prompt": p}) for p in prompts))
        assets = [r.json()["images"][0]["asset_id"] for r in seeded]
        soul = f"soul-load-{tag}"
        await client.put(f"/v1/styles/{soul}", json={"prompt": "a fox in a scarf, gouache"})
        mix = Mix(client, tag, prompts, soul, assets)
        warm_up_s = max(5.0, SECONDS * 0.2)
        started = time.monotonic()
        load = asyncio.gather(*(mix.client_loop(i, started + SECONDS) for i in range(CLIENTS)))
        await asyncio.sleep(warm_up_s)
        rss_warm = replica_rss()
        await load
        elapsed = time.monotonic() - started
        rss_end = replica_rss()
        outcomes = {}
        deadline = time.monotonic() + 300
        for task_id in set(mix.tasks):
            while (task := (await client.get(f"/v1/tasks/{task_id}")).json())["status"] in ("queued", "running"):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            outcomes[task_id] = task["status"]
    by_kind = {kind: percentiles([ms for k, ms, _ in mix.samples if k == kind])
               for kind in sorted({k for k, _, _ in mix.samples})}
    return {
        "seconds": round(elapsed, 1), "clients": CLIENTS, "requests": len(mix.samples),
        "requests_per_s": round(len(mix.samples) / elapsed, 1),
        "errors": [s for s in mix.samples if not expected(s[0], s[2])][:20],
        "error_count": sum(not expected(k, s) for k, _, s in mix.samples),
        "hits": sum(k == "hit" and s == 200 for k, _, s in mix.samples),
        "tasks": len(outcomes), "lost": sum(s in ("queued", "running") for s in outcomes.values()),
        "failed": sum(s in ("failed", "cancelled") for s in outcomes.values()),
        **percentiles([ms for _, ms, _ in mix.samples]), "by_kind": by_kind,
        "rss_warm_mb": round(rss_warm / 2**20), "rss_end_mb": round(rss_end / 2**20),
        "rss_growth": round(rss_end / rss_warm - 1, 4),
    }


def test_mixed_load_loses_nothing_and_holds_memory(montage):
    report = asyncio.run(run_load())
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / f"load-{int(SECONDS)}s.json").write_text(json.dumps(report, indent=2))
    print(f"\nload: {json.dumps(report)}")
    assert report["error_count"] == 0, report["errors"]  # no 429 and no miss among the repeated prompts
    assert report["hits"] > 0
    assert report["tasks"] > 0 and report["lost"] == report["failed"] == 0
    assert report["rss_growth"] < 0.10, report
