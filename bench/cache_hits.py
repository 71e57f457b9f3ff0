"""Cache-hit latency over HTTP: `python -m bench.cache_hits [--url URL]` (default: `make run` on :8000).

Seeds one image per labelled paraphrase pair (side a), then times, end to end through HTTP → ingress → Redis:
exact hits (side a again, re-cased and re-punctuated) and paraphrase hits (side b, first time seen, so each one
embeds and searches the LSH index). `GET /healthz`, interleaved with the exact hits, is the floor: the HTTP proxy
and the ingress with no work. Prints p50/p99 and the share of paraphrases served from the cache.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import time
from pathlib import Path

import httpx

from bench.dedup import PAIRS, load_pairs
from bench.stats import percentiles

OUT = Path("var/bench/cache_hits.json")


def timed_post(client: httpx.Client, prompt: str, tag: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.post("/v1/images/generations", json={"prompt": prompt, "style": tag})
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000.0, response.json()


def timed_healthz(client: httpx.Client) -> float:
    started = time.perf_counter()
    client.get("/healthz").raise_for_status()
    return (time.perf_counter() - started) * 1000.0


def run(url: str, repeat: int, limit: int | None = None) -> dict:
    """Seeds `limit` paraphrase pairs (all by default), then `repeat` exact hits per pair and one paraphrase each."""
    pairs = [p for p in load_pairs(PAIRS) if p["label"] == "paraphrase"][:limit]
    tag = f"bench{time.time_ns()}"  # a fresh style: a fresh dedup scope on every run
    with httpx.Client(base_url=url, timeout=600) as client:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda p: timed_post(client, p["a"], tag), pairs))
        exact, floor = [], []
        for pair in pairs:
            for _ in range(repeat):
                exact.append(timed_post(client, pair["a"].upper() + " .", tag))
                floor.append(timed_healthz(client))
        paraphrase = [timed_post(client, p["b"], tag) for p in pairs]
    assert all(body["cache_hit"] and body["match"] == "exact" for _, body in exact)
    hits = [ms for ms, body in paraphrase if body["cache_hit"] and body["match"] == "semantic"]
    return {"exact": percentiles([ms for ms, _ in exact]), "paraphrase": percentiles(hits),
            "healthz": percentiles(floor), "paraphrase_hit_rate": round(len(hits) / len(paraphrase), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--repeat", type=int, default=5, help="exact hits per seeded prompt")
    args = parser.parse_args()
    report = run(args.url, args.repeat)
    print(f"{'hit':<12}{'p50 ms':>10}{'p99 ms':>10}{'n':>6}")
    for name in ("exact", "paraphrase", "healthz"):
        row = report[name]
        print(f"{name:<12}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['n']:>6}")
    print(f"paraphrases served from the cache: {report['paraphrase_hit_rate']:.1%}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
