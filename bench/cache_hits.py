"""Cache-hit latency over HTTP against a running Montage (`make run`): `python -m bench.cache_hits [--url URL]`.

Seeds one image per labelled paraphrase pair (side a), then times, end to end through HTTP → ingress → Redis:
exact hits (side a again, re-cased and re-punctuated) and paraphrase hits (side b, first time seen, so each one
embeds and searches the LSH index). Prints p50/p99 and the share of paraphrases served from the cache.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import time
from pathlib import Path

import httpx
import numpy as np

from bench.dedup import PAIRS, load_pairs

OUT = Path("var/bench/cache_hits.json")


def timed_post(client: httpx.Client, prompt: str, tag: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.post("/v1/images/generations", json={"prompt": prompt, "style": tag})
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000.0, response.json()


def percentiles(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(samples, 50)), 2), "p99_ms": round(float(np.percentile(samples, 99)), 2),
            "n": len(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--repeat", type=int, default=5, help="exact hits per seeded prompt")
    args = parser.parse_args()
    pairs = [p for p in load_pairs(PAIRS) if p["label"] == "paraphrase"]
    tag = f"bench{int(time.time())}"  # a fresh style: a fresh dedup scope on every run
    with httpx.Client(base_url=args.url, timeout=300) as client:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda p: timed_post(client, p["a"], tag), pairs))
        exact = [timed_post(client, p["a"].upper() + " .", tag) for p in pairs for _ in range(args.repeat)]
        paraphrase = [timed_post(client, p["b"], tag) for p in pairs]
    assert all(body["cache_hit"] and body["match"] == "exact" for _, body in exact)
    hits = [ms for ms, body in paraphrase if body["cache_hit"] and body["match"] == "semantic"]
    report = {"exact": percentiles([ms for ms, _ in exact]), "paraphrase": percentiles(hits),
              "paraphrase_hit_rate": round(len(hits) / len(paraphrase), 3)}
    print(f"{'hit':<12}{'p50 ms':>10}{'p99 ms':>10}{'n':>6}")
    for name in ("exact", "paraphrase"):
        row = report[name]
        print(f"{name:<12}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['n']:>6}")
    print(f"paraphrases served from the cache: {report['paraphrase_hit_rate']:.1%}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
