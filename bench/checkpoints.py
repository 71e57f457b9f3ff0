"""Cost of step checkpoints and previews, side by side with the step they ride on: `python -m bench.checkpoints`.

1. Tiny pipelines in-process (CPU): each step of a 10-step job timed plain, then the preview (x0 → JPEG) and the
   checkpoint (capture, safetensors, Redis write) of that step timed on their own.
2. Production shapes: each family's real scheduler stepped on latents of its serving shape and dtype (SDXL and FLUX
   1024², SVD-XT 25 × 1024×576, Wan 2.1 480p 81 frames with UniPC's history), its state written to and read back
   from an embedded Redis, and a preview of that shape encoded; ratios against the per-step times measured on an
   H200 (BENCHMARKS.md, "GPU run"). The preview's projection there is fitted to a random linear decoder: its cost
   does not depend on the map's values.
Nothing is asserted; figures go to stdout and var/bench/checkpoints.json.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cluster.redis_server import EmbeddedRedis
from config import keys
from models.previews import Previewer
from models.steps import Boundary, Steps, StepState, capture
from records.checkpoints import Checkpoints

OUT = Path("var/bench/checkpoints.json")
TASK = "bench-task"
H200_STEP_MS = dict(sdxl=56.8, flux=171.7, kontext=361.4, svd=610.7, wan=6595.0)  # BENCHMARKS.md, GPU run
CHECKPOINT_EVERY = dict(sdxl=0, flux=0, kontext=0, svd=5, wan=5)  # config/families.py defaults


def _live_task(client: Any) -> Checkpoints:
    client.hset(keys.task(TASK), mapping={"status": "running", "lane": "normal"})
    return Checkpoints(client)


def _tiny_jobs() -> dict[str, tuple[Any, list]]:
    """(run, one request) of each tiny pipeline at 64², 10 steps."""
    from config.families import FluxArgs, SDXLArgs, Source, SVDArgs, WanArgs
    from models.flux import Flux
    from models.family import blank_png
    from models.sdxl import SDXL
    from models.svd import SVD
    from models.types import EditRequest, ImageRequest, VideoRequest
    from models.wan import Wan

    size = dict(width=64, height=64, steps=10, seed=0)
    image = ImageRequest(prompt="a red kite", guidance=5.0, **size)
    sdxl, flux = SDXL(SDXLArgs(source=Source.TINY, device="cpu")), Flux(FluxArgs(source=Source.TINY, device="cpu"))
    svd, wan = SVD(SVDArgs(source=Source.TINY, device="cpu")), Wan(WanArgs(source=Source.TINY, device="cpu"))
    still = blank_png(64, 64)
    return dict(
        sdxl=(sdxl.run, [image]), flux=(flux.run, [image]),
        kontext=(flux.run_edit, [EditRequest(prompt="add snow", image=still, guidance=3.5, **size)]),
        svd=(svd.run, [VideoRequest(image=still, num_frames=8, fps=7, guidance=3.0, **size)]),
        wan=(wan.run, [VideoRequest(image=still, prompt="a cat", num_frames=9, fps=16, guidance=5.0, **size)]))


def measure_tiny(checkpoints: Checkpoints) -> list[dict[str, Any]]:
    rows = []
    for name, (run, requests) in _tiny_jobs().items():
        run(requests)  # warm-up
        marks: list[float] = []
        run(requests, Steps(on_step=lambda b: marks.append(time.perf_counter())))
        step_ms = statistics.median((b - a) * 1000 for a, b in zip(marks, marks[1:]))
        costs: dict[str, list[float]] = {"preview": [], "checkpoint": []}
        sizes: list[int] = []

        def extras(boundary: Boundary) -> None:
            started = time.perf_counter()
            boundary.previews()
            costs["preview"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            data = boundary.states()[0].to_bytes()
            checkpoints.save(TASK, name, data, boundary.done, 600)
            costs["checkpoint"].append((time.perf_counter() - started) * 1000)
            sizes.append(len(data))

        run(requests, Steps(on_step=extras, preview_every=1))
        preview_ms, checkpoint_ms = (statistics.median(costs[k][1:]) for k in ("preview", "checkpoint"))
        rows.append(dict(family=name, step_ms=round(step_ms, 2), preview_ms=round(preview_ms, 2),
                         preview_ratio=round(preview_ms / step_ms, 3), checkpoint_ms=round(checkpoint_ms, 2),
                         checkpoint_ratio=round(checkpoint_ms / step_ms, 3), state_kb=round(sizes[-1] / 1024, 1)))
    return rows


def _production_state(name: str) -> tuple[StepState, torch.Tensor]:
    """A state of the family's serving shape after two real scheduler steps, and an x0 of that shape."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from models import sdxl, svd, wan

    shapes = dict(sdxl=((1, 4, 128, 128), torch.bfloat16, sdxl.scheduler()),
                  flux=((1, 4096, 64), torch.bfloat16, FlowMatchEulerDiscreteScheduler()),
                  kontext=((1, 4096, 64), torch.bfloat16, FlowMatchEulerDiscreteScheduler()),
                  svd=((1, 25, 4, 72, 128), torch.bfloat16, svd.scheduler()),
                  wan=((1, 16, 21, 60, 104), torch.float32, wan.scheduler()))  # Wan's loop runs in float32
    shape, dtype, scheduler = shapes[name]
    scheduler.set_timesteps(40)
    latents = torch.randn(shape).to(dtype)
    for timestep in scheduler.timesteps[:2]:
        latents = scheduler.step(torch.randn(shape).to(dtype), timestep, latents).prev_sample
    return capture(latents, scheduler, 2, 40)[0], latents


def _x0_of(name: str, latents: torch.Tensor) -> tuple[torch.Tensor, int, bool]:
    """(latents in the previewer's layout, channels, whether a clip)."""
    if name in ("flux", "kontext"):  # unpack (1, 64², 64) to (1, 16, 128, 128)
        return latents.view(1, 64, 64, 16, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, 16, 128, 128), 16, False
    if name == "wan":
        return latents.transpose(1, 2), 16, True
    return latents, 4, name == "svd"


def measure_production(checkpoints: Checkpoints, repeats: int = 3) -> list[dict[str, Any]]:
    rows = []
    for name, step_ms in H200_STEP_MS.items():
        state, latents = _production_state(name)
        x0, channels, clip = _x0_of(name, latents)
        decoder = torch.nn.Conv2d(channels, 3, 1)
        previewer = Previewer(lambda z: torch.sigmoid(decoder(z.float())).repeat_interleave(8, -1)
                              .repeat_interleave(8, -2), channels, 8)
        previewer.projection()
        write, read, encode, preview = [], [], [], []
        for _ in range(repeats):
            started = time.perf_counter()
            data = state.to_bytes()
            encode.append(time.perf_counter() - started)
            started = time.perf_counter()
            checkpoints.save(TASK, name, data, state.step, 600)
            write.append(time.perf_counter() - started)
            started = time.perf_counter()
            StepState.from_bytes(checkpoints.client.hget(keys.task_checkpoints(TASK), name))
            read.append(time.perf_counter() - started)
            started = time.perf_counter()
            previewer.clips(x0) if clip else previewer.images(x0)
            preview.append(time.perf_counter() - started)
        encode_ms, write_ms, read_ms, preview_ms = (statistics.median(costs) * 1000
                                                    for costs in (encode, write, read, preview))
        checkpoint_ms = encode_ms + write_ms
        every = CHECKPOINT_EVERY[name]
        rows.append(dict(family=name, state_mb=round(len(data) / 2**20, 2), serialise_ms=round(encode_ms, 1),
                         redis_write_ms=round(write_ms, 1), read_ms=round(read_ms, 1),
                         h200_step_ms=step_ms, checkpoint_per_step=round(checkpoint_ms / step_ms, 4),
                         default_every=every,
                         amortised=round(checkpoint_ms / (every * step_ms), 4) if every else None,
                         preview_ms=round(preview_ms, 2), preview_per_step=round(preview_ms / step_ms, 4)))
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = [" | ".join(columns), " | ".join("---" for _ in columns)]
    lines += [" | ".join(str(row[c]) for c in columns) for row in rows]
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        server = EmbeddedRedis(Path(data_dir)).start()
        try:
            import redis

            checkpoints = _live_task(redis.Redis.from_url(server.url))
            production = measure_production(checkpoints)
            tiny_rows = measure_tiny(checkpoints)
        finally:
            server.stop()
    print("Production shapes (state written to an embedded Redis, AOF everysec; ratios to H200 step times):")
    print(_table(production))
    print("\nTiny pipelines on this CPU (64², 10 steps; medians per step):")
    print(_table(tiny_rows))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dict(production=production, tiny=tiny_rows), indent=2))


if __name__ == "__main__":
    main()
