"""Reuse of denoising work on a synthetic prompt trace: `python -m bench.reuse [--prompts 2000] [--steps 30]
[--max-mb 64] [--out PATH]`.

The trace is built from the labelled pairs (tests/data/prompt_pairs.jsonl): sessions of a user starting from a pair's
first prompt and refining it (details appended), restating it (the pair's other side: a paraphrase or a hard
negative), repeating an earlier prompt or switching to an unrelated one. Every prompt is resolved as the images
workflow does, in one scope, on one embedded Redis 8: the bundled MiniLM embedding, `Dedup.resolve` (exact, semantic
merge, else a reusable neighbour), `reuse.mapping` to a step, `LatentLibrary.take`; each rendered prompt's kept
states (`steps.keep_steps`, SDXL 1024² states: 0.14 MB, BENCHMARKS.md) join the library (`LatentLibrary.add`, capped
by `--max-mb`). Printed: merges, reuses by step, the share of denoiser steps saved, the library's entries and bytes;
and the GPU-seconds accounting's error against the measured wall time of a fused run (`accounting`).
Quality is not measured here (tiny or no weights): see README "Reuse of denoising work".
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

from bench.dedup import PAIRS, load_pairs
from cluster.redis_server import EmbeddedRedis
from composition.dedup.matching import normalize_prompt
from composition.store.prompt_index import PromptIndex
from composition.store.reuse import LatentLibrary
from composition.dedup.resolve import Dedup
from config import keys
from config.composition import DedupArgs, ReuseArgs
from config.families import StepPolicy

OUT = Path("var/bench/reuse.json")
STATE_BYTES = int(0.14 * 2**20)  # SDXL 1024² StepState (BENCHMARKS.md "Step checkpoints")
REFINEMENTS = (", highly detailed", ", wide angle", ", 35mm photograph", ", sharp focus", ", shallow depth of field",
               ", cinematic composition", ", seen from above", ", in the distance", ", close-up", ", soft focus")


def trace(pairs: list[dict], count: int, rng: np.random.Generator) -> list[str]:
    """Sessions of 3-7 prompts: refine (45 %), restate as the pair's other side (15 %), repeat (15 %), unrelated."""
    prompts: list[str] = []
    while len(prompts) < count:
        pair = pairs[rng.integers(len(pairs))]
        session = [pair["a"]]
        for _ in range(rng.integers(2, 7)):
            draw = rng.random()
            if draw < 0.45:
                session.append(session[-1] + REFINEMENTS[rng.integers(len(REFINEMENTS))])
            elif draw < 0.60:
                session.append(pair["b"])
            elif draw < 0.75:
                session.append(session[rng.integers(len(session))])
            else:
                session.append(pairs[rng.integers(len(pairs))]["a"])
        prompts += session
    return prompts[:count]


class LocalEmbedder:
    """The embedder deployment's `embed.remote`, answered from embeddings computed in one batch beforehand."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors, self.embed = vectors, self

    async def remote(self, text: str) -> np.ndarray:
        return self.vectors[text]


async def replay(url: str, prompts: list[str], vectors: dict[str, np.ndarray], steps: int, reuse: ReuseArgs) -> dict:
    client = aioredis.from_url(url)
    prompt_store, library = PromptIndex(client, index_ttl_s=86_400), LatentLibrary(client, reuse)
    dedup = Dedup(prompt_store, LocalEmbedder(vectors), DedupArgs(), reuse.min_similarity)
    kept_steps = sorted(StepPolicy().kept_steps(steps))
    matches, reused_at, saved, peak = Counter(), Counter(), 0, 0
    for number, prompt in enumerate(prompts):
        resolution = await dedup.resolve("bench", prompt)
        if resolution.match != "new":
            matches[resolution.match] += 1
            saved += steps
            await dedup.commit(resolution)
            continue
        start = 0
        fraction = reuse.fraction(resolution.neighbour.similarity) if resolution.neighbour else None
        if fraction and round(fraction * steps) >= 1:
            found = await library.take("sdxl", resolution.neighbour.prompt_key, round(fraction * steps))
            start = found[0] if found else 0
        matches["new"] += 1
        reused_at[start] += 1
        saved += start
        key = (await dedup.commit(resolution)).prompt_key
        task_id = f"bench{number}"
        fields = {keys.kept_field(0, step): bytes(STATE_BYTES) for step in kept_steps if step > start}
        if fields:
            await client.hset(keys.task_kept(task_id), mapping=fields)
            await library.add("sdxl", key, task_id, 0)
            await client.delete(keys.task_kept(task_id))
        peak = max(peak, (await library.usage("sdxl"))[1])
    entries, held = await library.usage("sdxl")
    await client.aclose()
    reuses = {step: count for step, count in sorted(reused_at.items()) if step}
    return dict(prompts=len(prompts), steps=steps, exact=matches["exact"], semantic=matches["semantic"],
                new=matches["new"], reuses=sum(reuses.values()), reuses_by_step=reuses,
                steps_saved=saved, steps_saved_share=round(saved / (len(prompts) * steps), 4),
                steps_saved_by_reuse_share=round(sum(s * c for s, c in reuses.items()) / (len(prompts) * steps), 4),
                library_entries=entries, library_mb=round(held / 2**20, 2), library_peak_mb=round(peak / 2**20, 2),
                library_cap_mb=reuse.max_mb)


def accounting(url: str, jobs: int = 3, steps: int = 8, side: int = 256) -> dict:
    """GPU-seconds against the clock: `jobs` tiny SDXL requests of one shape run fused on an in-process replica;
    the sum of their `gpu_seconds` against the wall time of the run (after a warm-up run)."""
    from config.families import SDXLArgs
    from deployments.base import Job
    from deployments.families import SDXLDeployment
    from models.types import ImageRequest

    replica = SDXLDeployment(SDXLArgs(), url)
    requests = [ImageRequest(prompt=f"a red kite, take {i}", width=side, height=side, steps=steps, guidance=5.0,
                             seed=i) for i in range(jobs)]

    async def fused() -> list:
        return await asyncio.gather(*(replica.execute([Job(request)], "generate", "denoising")
                                      for request in requests))

    asyncio.run(fused())
    started = time.perf_counter()
    results = [result for (result,) in asyncio.run(fused())]
    wall_s = time.perf_counter() - started
    accounted = sum(result.metadata.gpu_seconds for result in results)
    return dict(accounting_jobs=jobs, accounting_fused=max(r.metadata.fused_requests for r in results),
                accounting_wall_s=round(wall_s, 4), accounting_gpu_s=round(accounted, 4),
                accounting_error=round(abs(accounted - wall_s) / wall_s, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--max-mb", type=float, default=64.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    from config.families import EmbedderArgs
    from models.embedder import Embedder

    prompts = trace(load_pairs(PAIRS), args.prompts, np.random.default_rng(args.seed))
    unique = sorted({normalize_prompt(prompt) for prompt in prompts})
    vectors = dict(zip(unique, Embedder(EmbedderArgs()).embed(unique), strict=True))
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(Path(folder), appendonly=False).start()
        try:
            figures = asyncio.run(replay(server.url, prompts, vectors, args.steps, ReuseArgs(max_mb=args.max_mb)))
            figures |= accounting(server.url)
        finally:
            server.stop()
    figures["unique_prompts"] = len(unique)
    for name, value in figures.items():
        print(f"{name:>28}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
