"""Timing one model call step by step on a device: warm-up, timed steps, a FLOP-counted step; decode rates."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.stats import median


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepTiming:
    """One short call: marks after every step, and the FLOPs of its last step when counted."""

    started: float
    ended: float = 0.0
    marks: list[float] = field(default_factory=list)
    step_flops: int = 0
    output: Any = None

    def per_step_s(self, timed: int) -> float:
        """Median of the steps after the warm-up one, leaving out the counted step."""
        return median([b - a for a, b in zip(self.marks[:timed], self.marks[1:timed + 1], strict=True)])

    def figures(self, timed: int, steps: int) -> dict[str, float]:
        step = self.per_step_s(timed)
        before, after = self.marks[0] - self.started - step, self.ended - self.marks[-1]
        return dict(before_s=before, per_step_ms=step * 1000.0, after_s=after, e2e_s=before + steps * step + after,
                    call_s=self.ended - self.started)


def timed_call(call: Callable[[dict, Any], Any], fields: dict, timed: int, device: torch.device,
               count_flops: bool) -> StepTiming:
    """Runs 1 warm-up + `timed` steps (+ 1 counted step), marking the end of each."""
    total = 1 + timed + int(count_flops)
    counter = FlopCounterMode(display=False)

    def on_step(done: int, steps: int) -> None:
        sync(device)
        timing.marks.append(time.perf_counter())
        if count_flops and done == total - 1:
            counter.__enter__()
        elif count_flops and done == total:
            counter.__exit__(None, None, None)
            timing.step_flops = counter.get_total_flops()

    sync(device)
    timing = StepTiming(started=time.perf_counter())
    timing.output = call({**fields, "steps": total}, on_step)
    sync(device)
    timing.ended = time.perf_counter()
    if len(timing.marks) != total:
        raise RuntimeError(f"expected {total} step callbacks, got {len(timing.marks)}")
    return timing


def token_call(call: Callable[[dict, Any], Any], fields: dict, device: torch.device) -> dict[str, float]:
    """Decode: the same call once as a warm-up (every path alike), then `steps` new tokens timed whole (prefill of a
    short prompt included)."""
    call(fields, None)
    sync(device)
    started = time.perf_counter()
    call(fields, None)
    sync(device)
    wall = time.perf_counter() - started
    return dict(call_s=wall, e2e_s=wall, per_step_ms=wall * 1000.0 / fields["steps"],
                tokens_per_s=fields["steps"] / wall)


def token_flops(call: Callable[[dict, Any], Any], fields: dict) -> int | None:
    """FLOPs of one decode step: a 3-token call minus a 2-token call. None where the counter cannot count the
    attention (torch 2.11 asserts on grouped-query SDPA shapes)."""
    counts = []
    for steps in (2, 3):
        try:
            with FlopCounterMode(display=False) as counter:
                call({**fields, "steps": steps}, None)
        except AssertionError:
            return None
        counts.append(counter.get_total_flops())
    return counts[1] - counts[0]
