"""The GPU suite: `python -m bench.gpu [--source random] [--workloads sdxl flux ...] [--repeat 3]`.

For every workload (bench/gpu_workloads.py), in one run: the plain diffusers/transformers baseline, then the Montage
model class path, each on freshly built full-size random bf16 weights (`random` source): end-to-end time, per-step
time (between `callback_on_step_end` calls, synchronised; per token for decode), peak memory and the FLOP floor.
The floor is the FLOPs of one denoising step (or decode step), counted with `FlopCounterMode` as the difference
between a 3-step and a 2-step call, over the bf16 matmul rate measured here on a large matmul.
Smoke mode on a CPU: `python -m bench.gpu --device cpu --source tiny --workloads sdxl --repeat 1`.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import time
from collections.abc import Callable
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.gpu_workloads import WORKLOADS, Workload, production_args
from bench.stats import median
from config.families import Source

OUT = Path("var/bench/gpu.json")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, iters: int = 20) -> float:
    """FLOP/s of a large square matmul (8192² bf16 on CUDA, 512² on a CPU)."""
    n = 8192 if device.type == "cuda" else 512
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - started)


def step_flops(call: Callable[[dict], Any], fields: dict) -> int:
    """FLOPs of one step: a 3-step call minus a 2-step call (encoders and decoders cancel out)."""
    counts = []
    for steps in (2, 3):
        with FlopCounterMode(display=False) as counter:
            call({**fields, "steps": steps})
        counts.append(counter.get_total_flops())
    return counts[1] - counts[0]


def _reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> int:
    """CUDA: max_memory_allocated since the last reset; CPU: the process's peak RSS (a high-water mark)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(call: Callable[[dict, Any], Any], fields: dict, repeat: int, device: torch.device,
          tokens: bool) -> tuple[float, float]:
    """(median end-to-end s, median per-step ms) over `repeat` calls after one warm-up."""
    totals, steps_ms, marks = [], [], []

    def on_step(done: int, total: int) -> None:
        _sync(device)
        marks.append(time.perf_counter())

    for attempt in range(repeat + 1):
        marks.clear()
        _sync(device)
        started = time.perf_counter()
        call(fields, on_step)
        _sync(device)
        if attempt:
            totals.append(time.perf_counter() - started)
            steps_ms += [(later - earlier) * 1000.0 for earlier, later in pairwise(marks)]
    e2e = median(totals)
    return e2e, median(steps_ms) if steps_ms and not tokens else e2e * 1000.0 / fields["steps"]


def _row(workload: Workload, path: str, fields: dict, device: torch.device, flops: int, rate: float,
         e2e: float, per_step: float) -> dict:
    floor_ms = flops / rate * 1000.0
    return dict(workload=workload.name, path=path, device=str(device), steps=fields["steps"], e2e_s=e2e,
                per_step_ms=per_step, peak_memory_gb=_peak_memory(device) / 2**30, step_flops=flops,
                floor_ms_per_step=floor_ms, floor_share=floor_ms / per_step, goal=workload.goal) \
        | ({"tokens_per_s": fields["steps"] / e2e} if workload.tokens else {})


def measure(workload: Workload, source: Source, device: torch.device, dtype: torch.dtype, repeat: int,
            rate: float) -> list[dict]:
    """Baseline, then the Montage path; never resident together, so each peak memory is its own."""
    fields = workload.fields(source)
    _reset_memory(device)
    baseline = workload.baseline(source, device, dtype)
    flops = step_flops(partial(workload.call_baseline, baseline, on_step=None), fields)
    rows = [_row(workload, "baseline", fields, device, flops, rate,
                 *timed(partial(workload.call_baseline, baseline), fields, repeat, device, workload.tokens))]
    del baseline
    _reset_memory(device)
    args = production_args(workload.family, source, str(device), str(dtype).removeprefix("torch."))
    montage = workload.montage(args, fields)
    rows.append(_row(workload, "montage", fields, device, flops, rate,
                     *timed(partial(workload.call_montage, montage), fields, repeat, device, workload.tokens)))
    return rows


def render(rows: list[dict], rate: float) -> str:
    lines = [f"bf16 matmul: {rate / 1e12:.1f} TFLOP/s" if rate > 1e12 else f"matmul: {rate / 1e9:.1f} GFLOP/s",
             (f"{'workload':<14}{'path':<10}{'e2e s':>9}{'step ms':>10}{'peak GB':>9}{'floor ms':>10}{'floor %':>9}"
              "  goal")]
    for r in rows:
        lines.append(f"{r['workload']:<14}{r['path']:<10}{r['e2e_s']:>9.3f}{r['per_step_ms']:>10.2f}"
                     f"{r['peak_memory_gb']:>9.2f}{r['floor_ms_per_step']:>10.3f}{r['floor_share']:>9.1%}  "
                     f"{r['goal']}" + (f" ({r['tokens_per_s']:.0f} tok/s)" if "tokens_per_s" in r else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--source", type=Source, choices=[Source.RANDOM, Source.TINY], default=Source.RANDOM)
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    print(f"source {args.source.value} on {args.device}", flush=True)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rate = matmul_rate(device, dtype)
    rows = [row for name in args.workloads
            for row in measure(WORKLOADS[name], args.source, device, dtype, args.repeat, rate)]
    print(render(rows, rate))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(matmul_flops_per_s=rate, rows=rows), indent=2, ensure_ascii=False))
    return rows


if __name__ == "__main__":
    main()
