"""Video time estimates against measured clips at three sizes: `python -m bench.estimates [--families svd wan]`.

Each tiny video family renders every size `--train` times; the results go through the app's `TimingStore` (a real
embedded Redis), whose fitted cost (fixed + per pixel-frame-step) then predicts a fresh clip of each size: in sample
(fitted on all three sizes) and held out (fitted on the other two sizes only, as a size no clip has had yet is
predicted). The old estimate (one mean cost per step × frame, any size) is computed from the same clips, side by side.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import redis.asyncio as aioredis

from bench.families import png
from cluster.redis_server import EmbeddedRedis
from composition.store.timings import TimingStore, work_units
from config.specs import SPECS
from models.types import VideoRequest

SIZES = {"svd": [(64, 64, 8), (128, 128, 8), (192, 128, 16)], "wan": [(64, 64, 9), (128, 128, 9), (192, 128, 17)]}
STEPS = 4
WIDTHS = (7, 13, 10, 10, 8, 10, 8, 10, 9)


def load(family: str):
    spec = SPECS[family]
    return spec.model_class(spec.args())


def clip_ms(model, width: int, height: int, frames: int):
    request = VideoRequest(image=png(), num_frames=frames, fps=8, width=width, height=height, steps=STEPS,
                           guidance=3.0, seed=0, gif=False)
    return model.animate([request])[0].metadata


async def measure(family: str, train: int, redis_url: str) -> list[dict]:
    model = load(family)
    clip_ms(model, *SIZES[family][0])  # warm-up
    client = aioredis.Redis.from_url(redis_url)
    store = TimingStore(client)
    per_step_frame = []
    for _ in range(train):
        for size in SIZES[family]:
            metadata = clip_ms(model, *size)
            units = work_units(size[0], size[1], STEPS, size[2])
            await store.record(family, metadata, units)
            for held_out in SIZES[family]:  # each held-out fit learns from the other sizes' clips only
                if held_out != size:
                    await store.record(_without(family, held_out), metadata, units)
            per_step_frame.append(metadata.run_ms / (STEPS * size[2]))
    cost = await store.get(family)
    held_out_costs = {size: await store.get(_without(family, size)) for size in SIZES[family]}
    await client.aclose()
    rows = []
    for size in SIZES[family]:
        width, height, frames = size
        actual = statistics.median(clip_ms(model, *size).run_ms for _ in range(2))
        units = work_units(width, height, STEPS, frames)
        fitted, held_out = cost.ms(units), held_out_costs[size].ms(units)
        old = statistics.fmean(per_step_frame) * STEPS * frames
        rows.append(dict(family=family, size=f"{width}x{height}x{frames}", actual_ms=actual, estimate_ms=fitted,
                         error=fitted / actual - 1, held_out_ms=held_out, held_out_error=held_out / actual - 1,
                         old_ms=old, old_error=old / actual - 1))
    return rows


def _without(family: str, size: tuple[int, int, int]) -> str:
    """The timing key of a fit that never saw clips of `size`."""
    return f"{family}-without-{'x'.join(map(str, size))}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", nargs="+", default=["svd", "wan"], choices=sorted(SIZES))
    parser.add_argument("--train", type=int, default=3, help="clips of each size before predicting")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as data:
        redis = EmbeddedRedis(data, appendonly=False).start()
        try:
            started = time.perf_counter()
            rows = [row for family in args.families for row in asyncio.run(measure(family, args.train, redis.url))]
        finally:
            redis.stop()
    header = ("family", "W×H×frames", "actual ms", "estimate", "error", "held out", "error", "old est.", "old err")
    print("".join(f"{text:<{w}}" if i < 2 else f"{text:>{w}}" for i, (text, w) in enumerate(zip(header, WIDTHS))))
    for row in rows:
        print(f"{row['family']:<7}{row['size']:<13}{row['actual_ms']:>10.0f}{row['estimate_ms']:>10.0f}"
              f"{row['error']:>+8.0%}{row['held_out_ms']:>10.0f}{row['held_out_error']:>+8.0%}"
              f"{row['old_ms']:>10.0f}{row['old_error']:>+9.0%}")
    worst = {name: max(abs(row[name]) for row in rows) for name in ("error", "held_out_error", "old_error")}
    print(f"worst error in sample {worst['error']:.0%}, held out {worst['held_out_error']:.0%} (goal ±30%), old "
          f"model {worst['old_error']:.0%}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
