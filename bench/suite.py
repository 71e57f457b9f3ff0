"""The CPU benchmark suite: `python -m bench.suite [--quick]` (`make bench`).

Starts its own Montage (embedded Redis, local Ray with one virtual GPU, Serve on :18500, serve_config.yaml's app on
the tiny models) and the naive baseline server, runs four side-by-side benchmarks, prints one table and writes
var/bench/cpu.json. Figures are ratios or percentiles measured in this one run; nothing here asserts a timing.
  1. serving overhead: HTTP → ingress → task → deployment vs the same pipeline called in-process;
  2. batching gain: images/s with 16 concurrent clients vs one at a time, Montage and the naive server (and the
     pipeline's own batch gain in-process: the ceiling on this device);
  3. cache hits: p50 / p99 of exact and paraphrase hits over HTTP (and the /healthz floor);
  4. queue: no-op tasks/s through the task store and runner, and the enqueue → start delay.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import batching, cache_hits, naive_server, overhead, queue
from bench.stack import ROOT, Stack, replica_threads

OUT = ROOT / "cpu.json"
NAIVE_PORT = 18501
OVERHEAD_GOAL = 1.10
BATCHING_GOAL = 3.0
HIT_P50_MS, HIT_P99_MS = 15.0, 50.0


@dataclass(frozen=True)
class Plan:
    """How many samples each benchmark takes."""

    overhead_pairs: int
    batching_rounds: int
    sequential: int
    concurrent: int
    cache_pairs: int | None
    cache_repeat: int
    queue_tasks: int


FULL = Plan(overhead_pairs=16, batching_rounds=4, sequential=8, concurrent=32, cache_pairs=None, cache_repeat=5,
            queue_tasks=2000)
QUICK = Plan(overhead_pairs=4, batching_rounds=1, sequential=4, concurrent=16, cache_pairs=20, cache_repeat=2,
             queue_tasks=400)


@dataclass(frozen=True)
class Row:
    benchmark: str
    figure: str
    goal: str
    met: str


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


def _overhead(size: dict, judged: bool) -> Row:
    return Row(f"overhead {size['size']} ({'judged' if judged else 'info'})",
               f"{size['ratio']:.2f}× ({size['served_ms']:.0f} vs {size['direct_ms']:.0f} ms)",
               f"≤ {OVERHEAD_GOAL:.2f}×", _met(size["ratio"] <= OVERHEAD_GOAL) if judged else "—")


def table(results: dict) -> list[Row]:
    """One row per figure; the overhead goal is judged at the heavier size, where model time is ~1 s."""
    tiny, heavy = results["overhead"]
    rows = [_overhead(tiny, judged=False), _overhead(heavy, judged=True)]
    b = results["batching"]
    p = b["pipeline"]
    rows += [
        Row("batching: Montage 16 clients vs 1", f"{b['montage_gain']:.2f}× ({b['montage_16']['images_per_s']} vs "
            f"{b['montage_1']['images_per_s']} img/s; mean batch {b['montage_16']['mean_batch']}, "
            f"{b['montage_16']['replicas']} replica(s))", f"≥ {BATCHING_GOAL:.0f}×",
            _met(b["montage_gain"] >= BATCHING_GOAL)),
        Row("batching: naive 16 clients vs 1", f"{b['naive_gain']:.2f}× ({b['naive_16']['images_per_s']} vs "
            f"{b['naive_1']['images_per_s']} img/s)", "—", "—"),
        Row("batching: Montage vs naive, 16 clients", f"{b['montage_vs_naive']:.2f}×", "—", "—"),
        Row(f"batching: pipeline alone, batch {p['batch']} vs 1 (ceiling, info)", f"{p['gain']:.2f}× "
            f"({p['batched_images_per_s']} vs {p['single_images_per_s']} img/s)", "—", "—"),
    ]
    c = results["cache_hits"]
    for name in ("exact", "paraphrase"):
        hit = c[name]
        rows.append(Row(f"cache hit: {name}", f"p50 {hit['p50_ms']:.1f} / p99 {hit['p99_ms']:.1f} ms",
                        f"p50 ≤ {HIT_P50_MS:.0f} / p99 ≤ {HIT_P99_MS:.0f} ms",
                        _met(hit["p50_ms"] <= HIT_P50_MS and hit["p99_ms"] <= HIT_P99_MS)))
    floor = c["healthz"]
    rows.append(Row("floor: GET /healthz (info)", f"p50 {floor['p50_ms']:.1f} / p99 {floor['p99_ms']:.1f} ms", "—", "—"))
    q = results["queue"]
    rows += [
        Row("queue: no-op tasks/s", f"{q['tasks_per_s']:.0f} tasks/s", "—", "—"),
        Row(f"queue: enqueue → start at {q['delay_rate_per_s']:.0f} tasks/s",
            f"p50 {q['delay']['p50_ms']:.1f} / p99 {q['delay']['p99_ms']:.1f} ms", "—", "—"),
    ]
    return rows


def render(rows: list[Row]) -> str:
    """A Markdown table (also readable in a terminal)."""
    header = Row("benchmark", "figure", "goal", "met")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in ("benchmark", "figure", "goal", "met")]
    lines = [header, Row(*("-" * w for w in widths)), *rows]
    return "\n".join("| " + " | ".join(str(v).ljust(w) for v, w in zip(asdict(r).values(), widths)) + " |"
                     for r in lines)


def run(plan: Plan) -> dict:
    stack = Stack()
    try:
        print(f"starting Montage on {stack.url} (Redis, Ray, Serve, tiny models) ...", flush=True)
        stack.start()
        threads = replica_threads(stack.application, "sdxl")
        results: dict = {"model_threads": threads}
        print("1/4 serving overhead ...", flush=True)
        results["overhead"] = overhead.run(stack.url, threads, plan.overhead_pairs)
        print("2/4 batching gain (Montage and the naive server) ...", flush=True)
        with naive_server.running(NAIVE_PORT, threads) as naive_url:
            results["batching"] = batching.run(stack.url, naive_url, plan.batching_rounds, plan.sequential,
                                               plan.concurrent)
        batch = stack.application["args"]["sdxl"]["deployment"]["batching"]["max_batch_size"]
        results["batching"]["pipeline"] = batching.pipeline_gain(threads, batch, plan.batching_rounds)
        print("3/4 cache hits ...", flush=True)
        results["cache_hits"] = cache_hits.run(stack.url, plan.cache_repeat, plan.cache_pairs)
        print("4/4 task queue ...", flush=True)
        results["queue"] = queue.run(stack.redis_db(1), stack.application["args"], plan.queue_tasks)
        return results
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, a few minutes)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    results = run(plan)
    rows = table(results)
    wall_s = round(time.perf_counter() - started, 1)
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(f"\n{render(rows)}\n\nwall time {wall_s:.0f} s, {os.cpu_count()} CPUs, 1-min load average {load[0]} at "
          f"start, {load[1]} at end")
    report = dict(date=datetime.date.today().isoformat(), quick=args.quick, wall_s=wall_s, plan=asdict(plan),
                  machine=dict(cpus=os.cpu_count(), load_average=load, platform=platform.platform(),
                               python=platform.python_version()),
                  table=[asdict(r) for r in rows], results=results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
