"""Step checkpoints, previews and concurrent groups on a device: `python -m bench.gpu_steps [--budget-s 330]`.

What the step machinery (models/steps.py, models/previews.py) costs and whether it holds on a GPU, each family in
its own process on full-size random bf16 weights (`random` source) through the Montage model classes:

- **exact resume**: the job run uninterrupted, its state saved at step k (capture → safetensors bytes), then a fresh
  call resumed from those bytes; the largest difference between the two outputs (uint8 pixels, 0 = identical);
- **cost per step**: the same job with a checkpoint (capture + bytes) and a preview (x0 → JPEG, projection fitted
  on first use) at every step, against the plain step, timed at each step boundary with the device synchronised;
- **concurrent groups** (SDXL): two one-image calls in two threads on one model, as a replica with
  `CONCURRENT_BATCHES` holds them, free-running and under the step scheduler (deployments/scheduler.py: hand-over
  at every step, then turns of the default `turn_ms`, then joined: their denoiser calls of each step as one forward,
  continuous batching), against the same calls one after the other: wall time, and
  whether each output equals its solo run. Free-running calls share the pipeline's tokenizers, whose padding
  settings are per call: they can collide (a CPU run failed on mismatched prompt lengths), which is one more reason
  a replica runs its calls under the scheduler, whose first slot covers the text encoding.

Rows go to OUT/steps.jsonl. Smoke mode on a CPU: `--device cpu --source tiny`.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import threading
import time
from typing import Any

import numpy as np
import torch

from bench.gpu import matmul_rate, memory, release, run_child, suite_parser
from bench.gpu_timing import sync
from bench.gpu_workloads import WORKLOADS, production_args
from config.families import Source, StepPolicy
from models.steps import Boundary, Steps, StepState

TURN_S = StepPolicy().turn_ms / 1000.0
# workload: steps at full size, the step saved, predicted seconds on one H200 (build, warm-up and four calls).
JOBS = dict(sdxl=(30, 15, 35), flux=(12, 6, 30), flux_kontext=(12, 6, 35), svd=(12, 6, 40), wan=(4, 2, 150))


class Recorder:
    """Marks each step boundary; optionally saves every step's state (`checkpoints`) and makes its preview
    (`previews`), timing each."""

    def __init__(self, device: torch.device, save_at: int, checkpoints: bool = False, previews: bool = False) -> None:
        self.device, self.save_at = device, save_at
        self.checkpoints, self.previews = checkpoints, previews
        self.marks: list[float] = []
        self.saved: list[bytes] = []
        self.checkpoint_s: list[float] = []
        self.preview_s: list[float] = []
        self.checkpoint_bytes = 0
        self.preview_bytes = 0

    def __call__(self, boundary: Boundary) -> None:
        sync(self.device)
        self.marks.append(time.perf_counter())
        if boundary.done == self.save_at:
            self.saved = [state.to_bytes() for state in boundary.states()]
        if self.checkpoints:
            started = time.perf_counter()
            data = [state.to_bytes() for state in boundary.states()]
            self.checkpoint_s.append(time.perf_counter() - started)
            self.checkpoint_bytes = sum(map(len, data))
        if self.previews:
            started = time.perf_counter()
            previews = boundary.previews()
            self.preview_s.append(time.perf_counter() - started)
            self.preview_bytes = sum(map(len, previews))

    def step_ms(self) -> float:
        """Median step, from boundary to boundary (the extras of the step before included), leaving out the first."""
        gaps = [b - a for a, b in zip(self.marks[1:], self.marks[2:])]
        return statistics.median(gaps) * 1000.0 if gaps else float("nan")


def _pixels(output: Any) -> np.ndarray:
    array = output if isinstance(output, np.ndarray) else np.asarray(output)
    return array.astype(np.int16)


def _call(workload: Any, model: Any, fields: dict, steps: Steps) -> Any:
    """The workload's Montage call with `steps` in place of its timing callback."""
    return workload.call_montage(model, fields, steps)


def measure(name: str, source: Source, device: torch.device, dtype: torch.dtype) -> list[dict]:
    workload = WORKLOADS[name]
    fields = dict(workload.fields(source))
    if source is Source.RANDOM:
        fields["steps"], save_at = JOBS[name][:2]
    else:
        fields["steps"], save_at = 4, 2
    args = production_args(workload.family, source, str(device), str(dtype).removeprefix("torch.")) | workload.args
    release(device)
    started = time.perf_counter()
    model = workload.montage(args, fields)
    sync(device)
    row: dict[str, Any] = dict(workload=name, steps=fields["steps"], saved_at=save_at,
                               build_s=time.perf_counter() - started)
    _call(workload, model, dict(fields, steps=2), Steps())  # warm-up: kernels, heuristics, allocator

    plain = Recorder(device, save_at)
    uninterrupted = _pixels(_call(workload, model, fields, Steps(on_step=plain)))
    loaded = [StepState.from_bytes(data) for data in plain.saved]
    seen: list[int] = []
    resumed = _pixels(_call(workload, model, fields, Steps(on_step=lambda b: seen.append(b.done), resume=loaded)))
    row |= dict(output_shape=list(uninterrupted.shape), resumed_steps=len(seen),
                resume_max_abs_diff=int(np.abs(resumed - uninterrupted).max()),
                resume_pixels_differing=float((resumed != uninterrupted).mean()))

    checked = Recorder(device, save_at, checkpoints=True, previews=True)
    with_extras = _pixels(_call(workload, model, fields, Steps(on_step=checked, preview_every=1)))
    if JOBS.get(name, (0, 0, 0))[2] < 100:  # each extra on its own (not on Wan: two more calls of its 6.6 s steps)
        alone = Recorder(device, save_at, checkpoints=True)
        _call(workload, model, fields, Steps(on_step=alone))
        row["step_ms_checkpoints_only"] = alone.step_ms()
        alone = Recorder(device, save_at, previews=True)
        _call(workload, model, fields, Steps(on_step=alone, preview_every=1))
        row["step_ms_previews_only"] = alone.step_ms()
    row |= dict(step_ms=plain.step_ms(), step_ms_with_extras=checked.step_ms(),
                checkpoint_ms=statistics.median(checked.checkpoint_s[1:] or checked.checkpoint_s) * 1000.0,
                first_preview_ms=checked.preview_s[0] * 1000.0,
                preview_ms=statistics.median(checked.preview_s[1:] or checked.preview_s) * 1000.0,
                checkpoint_mb=checked.checkpoint_bytes / 1e6, preview_kb=checked.preview_bytes / 1e3,
                extras_change_output=int(np.abs(with_extras - uninterrupted).max()))
    row["extras_share_of_step"] = row["step_ms_with_extras"] / row["step_ms"] - 1.0
    rows = [row | {k: v for k, v in memory(device).items() if k.startswith("peak")}]
    if name == "sdxl":
        rows.append(concurrent(workload, model, fields, device))
    return rows


def concurrent(workload: Any, model: Any, fields: dict, device: torch.device) -> dict:
    """Two one-image calls in two threads on one model, free-running and under the replica's step scheduler (one
    step at a time; the two users alternating at every step, then in turns of `TURN_S`), against the same two
    calls one after the other."""
    from deployments.scheduler import StepScheduler

    jobs = [dict(fields, prompt=prompt) for prompt in ("a red kite over a beach", "a lighthouse at night")]
    sync(device)
    started = time.perf_counter()
    solo = [_pixels(_call(workload, model, job, Steps())) for job in jobs]
    sync(device)
    sequential_s = time.perf_counter() - started
    row: dict[str, Any] = dict(workload="sdxl_two_threads", sequential_s=sequential_s)
    modes = (("free", None, 0), ("scheduled", 0.0, 0), ("turns", TURN_S, 0), ("joined", TURN_S, 8))
    for mode, turn_s, step_batch in modes:
        scheduler = None if turn_s is None else StepScheduler(turn_s, step_batch)
        results: list[Any] = [None, None]
        errors: list[BaseException] = []

        def run(index: int) -> None:
            try:
                if scheduler is None:
                    results[index] = _pixels(_call(workload, model, jobs[index], Steps()))
                    return
                ticket = scheduler.ticket("normal", f"user-{index}", "sdxl")
                with scheduler.running(ticket):
                    steps = Steps(on_step=lambda _boundary: scheduler.boundary(ticket),
                                  denoise=functools.partial(scheduler.fused, ticket))
                    results[index] = _pixels(_call(workload, model, jobs[index], steps))
            except BaseException as error:  # noqa: BLE001 - reported in the row
                errors.append(error)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sync(device)
        took = time.perf_counter() - started
        row |= {f"{mode}_s": took, f"{mode}_vs_sequential": sequential_s / took,
                f"{mode}_error": repr(errors[0]) if errors else None}
        if not errors:
            row[f"{mode}_max_abs_diff_vs_solo"] = max(int(np.abs(r - s).max()) for r, s in zip(results, solo))
    return row


def child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--device")
    parser.add_argument("--source", type=Source)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    matmul_rate(device, dtype, iters=100)
    for row in measure(args.name, args.source, device, dtype):
        print("ROW " + json.dumps(row | dict(device=str(device))), flush=True)


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return []
    parser = suite_parser(__doc__, list(JOBS))
    parser.add_argument("--budget-s", type=float, default=float("inf"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl = args.out / "steps.jsonl"
    jsonl.write_text("")
    started = time.monotonic()
    rows: list[dict] = []
    for name in args.workloads:
        left = args.budget_s - (time.monotonic() - started)
        estimate = JOBS[name][2] if args.source is Source.RANDOM else 0.0
        if estimate > left:
            new = [dict(workload=name, skipped=f"estimate {estimate} s > {left:.0f} s left")]
        else:
            workload_started = time.monotonic()
            new, error = run_child("bench.gpu_steps", name, args, timeout=min(left, 600.0))
            if error:
                new.append(dict(workload=name, failed=error))
            print(f"{name}: {time.monotonic() - workload_started:.0f} s", flush=True)
        rows += new
        with jsonl.open("a") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in new)
        for row in new:
            print(json.dumps(row), flush=True)
    print(f"total {time.monotonic() - started:.0f} s")
    return rows


if __name__ == "__main__":
    main()
