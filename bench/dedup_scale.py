"""The prompt index at scale, old LSH buckets vs the vector set, side by side in one run:
`python -m bench.dedup_scale [--sizes 1000 10000 100000 1000000] [--lookups 200]`.

One embedded Redis 8 (no AOF), in this process's reach only. Quality first: the labelled pairs
(tests/data/prompt_pairs.jsonl) embedded with the bundled MiniLM, every pair's first prompt indexed in one scope, every
second prompt resolved as the app does (candidates, cosine, salient-detail guard). Then scale: synthetic unit vectors
with the clustering of one product's prompts (a shared component, topic clusters, noise; MiniLM-like cosines) grow
one scope through the sizes; at each size, lookups of near-paraphrases of indexed prompts: p50 / p99 ms, candidates
read, and the load rate of each layout (pipelined, the same commands the register scripts run).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import redis
import redis.asyncio as aioredis

from cluster.redis_server import EmbeddedRedis
from composition.dedup.matching import DEFAULT_THRESHOLD, is_duplicate, normalize_prompt
from composition.store.prompt_index import PromptIndex, digest
from config import keys

DIM = 384
OUT = Path("var/bench/dedup_scale.json")
PAIRS = Path("tests/data/prompt_pairs.jsonl")
CANDIDATES = 8  # composition.dedup.candidates default
LOAD_BATCH = 500
LSH_TABLES, LSH_BITS = 16, 7  # the old index's defaults


# The old index, kept here only as the baseline: random-hyperplane buckets in Redis sets, every member read.

def lsh_planes(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((LSH_TABLES, LSH_BITS, DIM)).astype(np.float32)


def lsh_buckets(planes: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(N, tables) bucket codes."""
    signs = np.einsum("tbd,nd->ntb", planes, vectors) > 0
    return (signs.astype(np.int64) << np.arange(LSH_BITS)).sum(axis=2)


def lsh_key(scope: str, table: int, code: int) -> str:
    return f"bench:lsh:{scope}:t{table}:{code:x}"


def lsh_load(client: redis.Redis, scope: str, planes: np.ndarray, names: list[str], vectors: np.ndarray) -> None:
    codes = lsh_buckets(planes, vectors)
    pipe = client.pipeline(transaction=False)
    for name, vector, row in zip(names, vectors, codes, strict=True):
        pipe.hset(f"bench:lsh:prompt:{name}", mapping={"normalized": name, "embedding": vector.tobytes()})
        for table, code in enumerate(row):
            pipe.sadd(lsh_key(scope, table, int(code)), name)
    pipe.execute()


def lsh_lookup(client: redis.Redis, scope: str, planes: np.ndarray, vector: np.ndarray) -> tuple[str | None, int]:
    """The old path: the union of the vector's buckets, every member's embedding read, the best cosine."""
    codes = lsh_buckets(planes, vector[None])[0]
    members = client.sunion([lsh_key(scope, t, int(c)) for t, c in enumerate(codes)])
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hget(f"bench:lsh:prompt:{member.decode()}", "embedding")
    best, best_cos = None, -1.0
    for member, blob in zip(members, pipe.execute(), strict=True):
        cosine = float(np.frombuffer(blob, np.float32) @ vector)
        if cosine > best_cos:
            best, best_cos = member.decode(), cosine
    return best, len(members)


# The new index, through the app's own store.

def index_load(client: redis.Redis, scope: str, names: list[str], vectors: np.ndarray, ttl_s: int) -> None:
    """What `_REGISTER` writes per prompt, pipelined: exact key, prompt hash with embedding, vector, recency."""
    pipe = client.pipeline(transaction=False)
    now = time.time()
    for name, vector in zip(names, vectors, strict=True):
        prompt_key, blob = digest(scope, name), vector.tobytes()
        pipe.set(keys.prompt_exact(scope, digest(name)), prompt_key, ex=ttl_s)
        pipe.hset(keys.prompt(prompt_key), mapping={"prompt": name, "normalized": name, "scope": scope,
                                                     "embedding": blob, "created_at": now})
        pipe.execute_command("VADD", keys.prompt_vectors(scope), "FP32", blob, prompt_key, "Q8")
        pipe.zadd(keys.prompt_recent(), {prompt_key: now})
    pipe.execute()


async def index_lookup(store: PromptIndex, scope: str, vector: np.ndarray) -> tuple[str | None, int]:
    """The app's path: the scope's nearest prompts, their embeddings, the best cosine."""
    found = await store.candidates(scope, vector, CANDIDATES)
    best = max(found, key=lambda item: float(item[2] @ vector), default=None)
    return (best[0] if best else None), len(found)


def synthetic(rng: np.random.Generator, count: int, centres: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """Prompts of one product: a shared component (style, lighting, settings), a topic cluster, noise."""
    topic = centres[rng.integers(0, len(centres), count)]
    vectors = 0.55 * shared + 0.65 * topic + 0.52 * rng.standard_normal((count, DIM)).astype(np.float32) / np.sqrt(DIM)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def paraphrases(rng: np.random.Generator, vectors: np.ndarray) -> np.ndarray:
    """Near copies (cosine about 0.95): what a rewording of an indexed prompt embeds to."""
    noisy = vectors + 0.33 * rng.standard_normal(vectors.shape).astype(np.float32) / np.sqrt(DIM)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def quality(url: str) -> dict:
    """The labelled pairs through both indexes: every pair's first prompt indexed in one scope (the others crowd it),
    its second prompt looked up; merged when the first is among the candidates and the app's rule
    (cosine >= threshold, no salient conflict) accepts it."""
    from config.families import EmbedderArgs
    from models.embedder import Embedder

    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    embedder = Embedder(EmbedderArgs())
    left = embedder.embed([normalize_prompt(p["a"]) for p in pairs]).astype(np.float32)
    right = embedder.embed([normalize_prompt(p["b"]) for p in pairs]).astype(np.float32)
    sync = redis.Redis.from_url(url)
    client = aioredis.Redis.from_url(url)
    store, planes = PromptIndex(client), lsh_planes()
    names = [f"pair{i}" for i in range(len(pairs))]
    index_load(sync, "quality", names, left, 86400)
    lsh_load(sync, "quality", planes, names, left)
    paraphrase = [p["label"] == "paraphrase" for p in pairs]
    result = {}
    for layout in ("lsh", "index"):
        found, merged = [], []
        for name, pair, a, b in zip(names, pairs, left, right, strict=True):
            if layout == "index":
                candidates = {key for key, _, _ in await store.candidates("quality", b, CANDIDATES)}
                found.append(digest("quality", name) in candidates)
            else:
                codes = lsh_buckets(planes, b[None])[0]
                found.append(name.encode() in sync.sunion([lsh_key("quality", t, int(c)) for t, c in enumerate(codes)]))
            merged.append(found[-1] and is_duplicate(pair["a"], pair["b"], float(a @ b)))
        para = [m for m, is_para in zip(merged, paraphrase, strict=True) if is_para]
        result[layout] = dict(
            partner_found=round(sum(f for f, is_para in zip(found, paraphrase, strict=True) if is_para) / len(para), 4),
            paraphrases_merged=round(sum(para) / len(para), 4),
            false_merges=sum(m for m, is_para in zip(merged, paraphrase, strict=True) if not is_para))
    await client.aclose()
    return dict(pairs=len(pairs), threshold=DEFAULT_THRESHOLD, **result)


async def scale(url: str, sizes: list[int], lookups: int, lsh_max: int) -> list[dict]:
    sync = redis.Redis.from_url(url)
    client = aioredis.Redis.from_url(url)
    store, planes = PromptIndex(client), lsh_planes()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((max(sizes) // 200 + 1, DIM)).astype(np.float32) / np.sqrt(DIM)
    shared = rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
    indexed = np.zeros((0, DIM), np.float32)
    rows, load_s = [], {"index": 0.0, "lsh": 0.0}
    for size in sizes:
        while len(indexed) < size:
            batch = synthetic(rng, min(LOAD_BATCH * 20, size - len(indexed)), centres, shared)
            names = [f"p{len(indexed) + i}" for i in range(len(batch))]
            for start in range(0, len(batch), LOAD_BATCH):
                part = slice(start, start + LOAD_BATCH)
                started = time.perf_counter()
                index_load(sync, "scale", names[part], batch[part], 86400)
                load_s["index"] += time.perf_counter() - started
                if size <= lsh_max:
                    started = time.perf_counter()
                    lsh_load(sync, "scale", planes, names[part], batch[part])
                    load_s["lsh"] += time.perf_counter() - started
            indexed = np.concatenate([indexed, batch])
        targets = rng.choice(size, min(lookups, size), replace=False)
        queries = paraphrases(rng, indexed[targets])
        row = dict(size=size, index_insert_per_s=round(size / load_s["index"]))
        timings, found = [], 0
        for target, query in zip(targets, queries, strict=True):
            started = time.perf_counter()
            best, _ = await index_lookup(store, "scale", query)
            timings.append((time.perf_counter() - started) * 1000)
            found += best == digest("scale", f"p{target}")
        row |= dict(index_p50_ms=round(statistics.median(timings), 3), index_p99_ms=round(percentile(timings, 99), 3),
                    index_recall=round(found / len(targets), 4),
                    index_bytes_per_prompt=round(sync.memory_usage(keys.prompt_vectors("scale")) / size))
        if size <= lsh_max:
            timings, read, found = [], [], 0
            for target, query in list(zip(targets, queries, strict=True))[: max(5, lookups * 1000 // size)]:
                started = time.perf_counter()
                best, members = lsh_lookup(sync, "scale", planes, query)
                timings.append((time.perf_counter() - started) * 1000)
                read.append(members)
                found += best == f"p{target}"
            row |= dict(lsh_insert_per_s=round(size / load_s["lsh"]), lsh_lookups=len(timings),
                        lsh_p50_ms=round(statistics.median(timings), 3), lsh_p99_ms=round(percentile(timings, 99), 3),
                        lsh_candidates=round(statistics.mean(read) / size, 4),
                        lsh_recall=round(found / len(timings), 4))
        rows.append(row)
        print(json.dumps(row), flush=True)
    await client.aclose()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--lookups", type=int, default=200, help="index lookups per size (LSH: fewer at large sizes)")
    parser.add_argument("--lsh-max", type=int, default=1_000_000, help="largest size the old layout is loaded to")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedRedis(Path(data), appendonly=False).start()
        try:
            version = redis.Redis.from_url(server.url).info("server")["redis_version"]
            print(f"redis {version}; quality on the labelled pairs:", flush=True)
            labelled = asyncio.run(quality(server.url))
            print(json.dumps(labelled), flush=True)
            rows = asyncio.run(scale(server.url, sorted(args.sizes), args.lookups, args.lsh_max))
        finally:
            server.stop()
    print(f"\n{'size':>9} | {'vector set p50 / p99 ms':>24} {'recall':>7} {'inserts/s':>10} {'B/prompt':>9} |"
          f" {'LSH p50 / p99 ms':>18} {'read':>6} {'recall':>7} {'inserts/s':>10}")
    for row in rows:
        lsh = (f"{row['lsh_p50_ms']:>8.2f} / {row['lsh_p99_ms']:<8.2f} {row['lsh_candidates']:>6.0%} "
               f"{row['lsh_recall']:>7.1%} {row['lsh_insert_per_s']:>10}") if "lsh_p50_ms" in row else "not loaded"
        print(f"{row['size']:>9} | {row['index_p50_ms']:>10.3f} / {row['index_p99_ms']:<11.3f} "
              f"{row['index_recall']:>7.1%} {row['index_insert_per_s']:>10} {row['index_bytes_per_prompt']:>9} | {lsh}")
    first, last = rows[0], rows[-1]
    print(f"vector set p50 at {last['size']}: {last['index_p50_ms']:.3f} ms = "
          f"{last['index_p50_ms'] / first['index_p50_ms']:.2f}x its p50 at {first['size']} (goal <= 2x and <= 5 ms)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(redis=version, quality=labelled, scale=rows), indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
