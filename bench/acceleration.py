"""Step caches on tiny models (CPU), side by side in one run: `python -m bench.acceleration`.

For FLUX, Kontext and Wan (tiny, 64², 12 steps), per threshold: steps skipped, time against the uncached run, and
the output's relative difference from it (mean absolute, over the mean); then the uncached run again once the
cache's hooks are installed (their cost to requests that do not ask for the cache, and whether its pixels are the
same). Random weights say nothing of quality: how far the first block's residual moves between steps is the
weights' own (here FLUX's default skips nothing and Wan's most steps, a permissive one nearly all); only the
mechanics and their cost are measured. Nothing is asserted; figures go to stdout and var/bench/acceleration.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import median, ratio

OUT = Path("var/bench/acceleration.json")
STEPS = 12
REPEATS = 3
THRESHOLDS = (0.05, 0.08, 0.5)


def _timed(run: Any) -> tuple[float, Any]:
    samples, output = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        output = run()
        samples.append(time.perf_counter() - started)
    return median(samples) * 1000.0, output


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # --help; no options
    from config.acceleration import StepCacheArgs
    from config.families import FluxArgs, WanArgs
    from models.acceleration import CacheUse
    from models.flux import Flux
    from models.family import blank_png
    from models.steps import Steps
    from models.types import EditRequest, ImageRequest, VideoRequest
    from models.wan import Wan

    size = dict(width=64, height=64, steps=STEPS, seed=0)
    flux, wan = Flux(FluxArgs(device="cpu", max_sequence_length=64)), Wan(WanArgs(device="cpu"))
    still = blank_png(64, 64)
    jobs = dict(flux=(flux.run, ImageRequest(prompt="a red kite", guidance=3.5, **size)),
                kontext=(flux.run_edit, EditRequest(prompt="add snow", image=still, guidance=3.5, **size)),
                wan=(wan.run, VideoRequest(image=still, prompt="a cat", num_frames=9, fps=16, guidance=5.0, **size)))
    report: dict[str, Any] = {}
    for name, (run, request) in jobs.items():
        run([request])  # warm
        plain_ms, plain = _timed(lambda: run([request]))
        rows = []
        for threshold in THRESHOLDS:
            caches: list[CacheUse] = []

            def cached() -> Any:
                caches.append(CacheUse(StepCacheArgs(threshold=threshold)))
                try:
                    return run([request], Steps(cache=caches[-1]))
                finally:
                    caches[-1].release()

            cached_ms, output = _timed(cached)
            difference = float(np.abs(output - plain).mean() / max(float(np.abs(plain).mean()), 1e-9))
            rows.append(dict(threshold=threshold, steps_skipped=caches[-1].steps_skipped,
                             time_ratio=ratio(cached_ms, plain_ms), relative_difference=round(difference, 5)))
        after_ms, after = _timed(lambda: run([request]))
        report[name] = dict(steps=STEPS, plain_ms=round(plain_ms, 1), thresholds=rows,
                            plain_after_hooks_ratio=ratio(after_ms, plain_ms),
                            plain_after_hooks_identical=bool(np.array_equal(after, plain)))
        print(f"{name}: {STEPS} steps, uncached {plain_ms:.0f} ms; uncached once hooked ×"
              f"{report[name]['plain_after_hooks_ratio']} (identical: {report[name]['plain_after_hooks_identical']})")
        for row in rows:
            print(f"  threshold {row['threshold']:<5} skipped {row['steps_skipped']:>2}/{STEPS}  time ×"
                  f"{row['time_ratio']:<6} relative difference {row['relative_difference']}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
