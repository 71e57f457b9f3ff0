"""Step batching on a device (bench/speed.py's `batching` rows, issue #29 item 7): SDXL requests through the
replica's admission (`deployments/admission.py`) and step scheduler (`deployments/scheduler.py`), as a replica runs
them, without Serve or Redis (the GPU machine has neither): images/s one at a time, with request-level batching and
with continuous batching; two groups of different shapes taking turns against one after the other."""
from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any

import torch

from bench.gpu_timing import sync
from bench.gpu_workloads import WORKLOADS, production_args
from config.families import Source

ARRIVAL_S = 0.2


@dataclass
class _Job:
    request: Any


def serve(model: Any, requests: list[Any], arrivals: list[float], groups: int, batch: int, step_batch: int,
          turn_s: float) -> tuple[float, list[Any]]:
    """`requests` arriving at `arrivals` (s) through an admission queue of `groups` group slots and batches of up
    to `batch` (no batch wait), each group a thread holding a step-scheduler ticket (`step_batch` requests joining a
    forward, turns of `turn_s`), as a replica runs them: (seconds from the first arrival to the last result, outputs
    in request order)."""
    from deployments.admission import Admission
    from deployments.scheduler import StepScheduler
    from models.steps import Steps

    scheduler = StepScheduler(turn_s, step_batch)

    def call(jobs: list[_Job]) -> list[Any]:
        ticket = scheduler.ticket("normal", "bench", model.fuse_key(jobs[0].request), size=len(jobs))
        with scheduler.running(ticket):
            steps = Steps(on_step=lambda _boundary: scheduler.boundary(ticket),
                          denoise=functools.partial(scheduler.fused, ticket))
            return list(model.run([job.request for job in jobs], steps))

    async def scenario() -> list[Any]:
        admission = Admission(lambda jobs: asyncio.to_thread(call, jobs), model.group_key, groups, batch, 0.0)

        async def client(request: Any, at: float) -> Any:
            await asyncio.sleep(at)
            return await admission(_Job(request), "normal", "bench")

        return await asyncio.gather(*(client(r, at) for r, at in zip(requests, arrivals, strict=True)))

    started = time.perf_counter()
    outputs = asyncio.run(scenario())
    sync(model.device)
    return time.perf_counter() - started, outputs


def batching_child(source: Source, device: torch.device, dtype: torch.dtype, emit: Any) -> None:
    from bench.gpu_steps import TURN_S
    from bench.gpu_workloads import _image_request

    workload = WORKLOADS["sdxl"]
    fields = workload.fields(source)
    args = production_args("sdxl", source, str(device), str(dtype).removeprefix("torch.")) | dict(
        compile=device.type == "cuda", cuda_graphs=True)
    started = time.perf_counter()
    model = workload.montage(args, fields)
    model.warmup()
    side = 768 if fields["width"] >= 1024 else 2 * fields["width"]  # tiny: 128²
    other = dict(fields, width=side, height=side)
    model.run([_image_request(other)])  # the second shape's graphs captured before the timings
    build_s = time.perf_counter() - started
    requests = [_image_request(fields).model_copy(update={"seed": seed, "prompt": f"{fields['prompt']} {seed}"})
                for seed in range(8)]
    arrivals = [index * ARRIVAL_S for index in range(8)]
    modes = dict(one_at_a_time=(1, 1, 0), request_batching=(1, 8, 0), continuous=(9, 1, 8))
    figures = {}
    for mode, (groups, batch, step_batch) in modes.items():
        seconds, _ = serve(model, requests, arrivals, groups, batch, step_batch, TURN_S)
        figures[mode] = seconds
        emit(dict(workload="batching", path=mode, e2e_s=seconds, images_per_s=8 / seconds, requests=8,
                  arrival_s=ARRIVAL_S, build_s=build_s))
    for baseline in ("one_at_a_time", "request_batching"):
        emit(dict(workload="batching", path=f"continuous_vs_{baseline}", e2e_s=None,
                  ratio=figures[baseline] / figures["continuous"]))
    pair = [_image_request(fields), _image_request(other)]  # two shapes: they never share a forward
    sequential, _ = serve(model, pair, [0.0, 0.0], 1, 1, 0, TURN_S)
    turns, _ = serve(model, pair, [0.0, 0.0], 2, 1, 8, TURN_S)
    emit(dict(workload="batching", path="one_after_the_other", e2e_s=sequential, sizes=[
        (r.width, r.height) for r in pair]))
    emit(dict(workload="batching", path="taking_turns", e2e_s=turns, turn_s=TURN_S))
    emit(dict(workload="batching", path="turns_vs_one_after_the_other", e2e_s=None, ratio=sequential / turns))
