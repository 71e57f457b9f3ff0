"""Per-call time of each tiny family on this machine, one request of 2 steps per call, at the tiny defaults (64²) and
at larger sizes: `python -m bench.families [--sizes 64,256,512] [--repeat N] [--previous] [--json FILE]`.

Each figure is the median of `repeat` calls after a warm-up, as wall time and as this process's CPU time, on one
torch thread as in a replica (two threads on a shared machine spin against each other: 5 to 39× slower here).
`--previous` also builds the image families with their tiny shapes before the 1/8 VAEs and times both side by side,
call by call, at the sides up to `--previous-max`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from config.families import (
    EmbedderArgs,
    FluxArgs,
    LLMArgs,
    SDXLArgs,
    Source,
    SVDArgs,
    WanArgs,
)
from models.images import mask_png
from models.types import (
    Control,
    EditRequest,
    ImageRequest,
    PromptRequest,
    StoryboardRequest,
    VideoRequest,
)


class Case(NamedTuple):
    load: Callable[[], Any]
    call: Callable[[Any, int], Any]  # (model, side in pixels) → results
    kind: str  # "image": at every side of --sizes; "video": of --video-sizes; "text": once
    family: str | None = None  # its models module, where --previous finds the tiny shapes to swap


def png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def image(size: int) -> dict:
    return dict(width=size, height=size, steps=2, guidance=5.0, seed=0)


def sourced(size: int, inpaint: bool = False) -> dict:
    """Image to image at strength 0.5 (half the steps run) or, with `inpaint`, an inpainting of the centre square
    (every step) of one source image."""
    if not inpaint:
        return dict(image(size), image=png(size), strength=0.5)
    wanted = np.zeros((size, size), bool)
    wanted[size // 4:3 * size // 4, size // 4:3 * size // 4] = True
    return dict(image(size), image=png(size), mask=mask_png(wanted))


def video(size: int, num_frames: int) -> VideoRequest:
    return VideoRequest(image=png(size), num_frames=num_frames, fps=7, **image(size))


def cases() -> dict[str, Case]:
    from models.embedder import Embedder
    from models.flux import Flux
    from models.llm import LLM
    from models.sdxl import SDXL
    from models.svd import SVD
    from models.wan import Wan

    flux = lambda: Flux(FluxArgs(max_sequence_length=64))  # noqa: E731 (serve_config.yaml's length)
    return {
        "llm.optimize": Case(lambda: LLM(LLMArgs(max_new_tokens=32)),
                             lambda m, _: m.optimize([PromptRequest(prompt="a fox in the snow")]), "text"),
        "llm.storyboard": Case(lambda: LLM(LLMArgs()), lambda m, _: m.storyboard(
            StoryboardRequest(theme="a fox in winter", num_scenes=4)), "text"),
        "sdxl.generate": Case(lambda: SDXL(SDXLArgs()),
                              lambda m, s: m.generate([ImageRequest(prompt="a fox", **image(s))]), "image", "sdxl"),
        "sdxl.controlled": Case(lambda: SDXL(SDXLArgs()), lambda m, s: m.generate(
            [ImageRequest(prompt="a fox", controls=(Control(type="canny", image=png(s)),), **image(s))]),
                                "image", "sdxl"),
        "sdxl.img2img": Case(lambda: SDXL(SDXLArgs()),
                             lambda m, s: m.generate([ImageRequest(prompt="a fox", **sourced(s))]), "image", "sdxl"),
        "sdxl.inpaint": Case(lambda: SDXL(SDXLArgs()),
                             lambda m, s: m.generate([ImageRequest(prompt="a fox", **sourced(s, True))]), "image",
                             "sdxl"),
        "flux.img2img": Case(flux, lambda m, s: m.generate([ImageRequest(prompt="a fox", **sourced(s))]), "image",
                             "flux"),
        "flux.inpaint": Case(flux, lambda m, s: m.generate([ImageRequest(prompt="a fox", **sourced(s, True))]),
                             "image", "flux"),
        "flux.generate": Case(flux, lambda m, s: m.generate([ImageRequest(prompt="a fox", **image(s))]),
                              "image", "flux"),
        "flux.edit": Case(flux, lambda m, s: m.edit([EditRequest(prompt="make it night", image=png(s), **image(s))]),
                          "image", "flux"),
        "svd.animate": Case(lambda: SVD(SVDArgs()), lambda m, s: m.animate([video(s, 8)]), "video"),
        "wan.animate": Case(lambda: Wan(WanArgs()), lambda m, s: m.animate([video(s, 9)]), "video"),
        "embedder.embed": Case(lambda: Embedder(EmbedderArgs(source=Source.PRETRAINED)),
                               lambda m, _: m.embed(["a red fox in the snow"] * 8), "text"),
    }


def previous_shapes() -> dict[str, dict[str, dict]]:
    """The image families' tiny shapes that changed on 2026-12-06: SDXL's VAE of 1/2 (and the ControlNet's
    conditioning embedding to match), FLUX's of 1/1; their latents had 16× and 64× the cells at a given size."""
    from models import flux, sdxl

    return {
        "sdxl": dict(
            vae=dict(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                     down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2),
            controlnet=dict(sdxl.ARCHITECTURES[Source.TINY]["controlnet"],
                            conditioning_embedding_out_channels=(16, 32))),
        "flux": dict(vae=dict(flux.ARCHITECTURES[Source.TINY]["vae"], block_out_channels=(4,),
                              down_block_types=["DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D"])),
    }


@contextlib.contextmanager
def tiny_shapes(module: ModuleType, changes: dict[str, dict]) -> Iterator[None]:
    """Builds within use `changes` in place of some of `module`'s tiny component configs."""
    tiny = module.ARCHITECTURES[Source.TINY]
    saved = dict(tiny)
    tiny.update(changes)
    try:
        yield
    finally:
        tiny.clear()
        tiny.update(saved)


def load_previous(case: Case) -> Any:
    import importlib

    with tiny_shapes(importlib.import_module(f"models.{case.family}"), previous_shapes()[case.family]):
        return case.load()


def measure(calls: list[Callable[[], Any]], repeat: int) -> list[tuple[float, float]]:
    """Median wall and CPU milliseconds of each call, `repeat` rounds of one call each after one warm-up each."""
    for call in calls:
        call()
    wall: list[list[float]] = [[] for _ in calls]
    cpu: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for index, call in enumerate(calls):
            started, started_cpu = time.perf_counter(), time.process_time()
            call()
            wall[index].append((time.perf_counter() - started) * 1000)
            cpu[index].append((time.process_time() - started_cpu) * 1000)
    return [(round(statistics.median(w), 1), round(statistics.median(c), 1)) for w, c in zip(wall, cpu, strict=True)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="64,256,512", help="sides in pixels of the image calls")
    parser.add_argument("--video-sizes", default="64", help="sides in pixels of the video calls (tiny default: 64)")
    parser.add_argument("--only", help="comma-separated call names (default: all)")
    parser.add_argument("--previous", action="store_true", help="also time the image families' previous tiny shapes")
    parser.add_argument("--previous-max", type=int, default=256, help="largest side timed with the previous shapes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads: a replica's (Ray sets OMP_NUM_THREADS=1 for its 0.1 CPU) by default")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sides = dict(image=args.sizes, video=args.video_sizes, text="64")
    selected = {name: case for name, case in cases().items() if not args.only or name in args.only.split(",")}
    load_before, rows = os.getloadavg()[0], []
    for name, case in tqdm(selected.items(), desc="benchmark", unit="call"):
        started = time.perf_counter()
        model = case.load()
        load_s = round(time.perf_counter() - started, 2)
        previous = load_previous(case) if args.previous and case.family else None
        for side in map(int, sides[case.kind].split(",")):
            models = [model] + ([previous] if previous is not None and side <= args.previous_max else [])
            figures = measure([lambda m=m: case.call(m, side) for m in models], args.repeat)
            row = dict(call=name, size=side, load_s=load_s, median_ms=figures[0][0], cpu_ms=figures[0][1])
            if len(figures) > 1:
                row.update(previous_ms=figures[1][0], previous_cpu_ms=figures[1][1])
            rows.append(row)
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(f"1-minute load average {load[0]} before, {load[1]} after; {os.cpu_count()} CPUs, {args.threads} torch "
          f"thread(s); {args.repeat} calls each")
    print(f"{'call':<18}{'size':>6}{'load s':>8}{'median ms':>11}{'cpu ms':>9}"
          + (f"{'previous ms':>13}{'previous cpu':>14}{'speed-up':>10}" if args.previous else ""))
    for row in rows:
        line = f"{row['call']:<18}{row['size']:>5}²{row['load_s']:>8}{row['median_ms']:>11}{row['cpu_ms']:>9}"
        if "previous_ms" in row:
            line += (f"{row['previous_ms']:>13}{row['previous_cpu_ms']:>14}"
                     f"{row['previous_ms'] / row['median_ms']:>9.1f}×")
        print(line)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(load_average=load, cpus=os.cpu_count(), threads=args.threads, repeat=args.repeat, rows=rows),
                      handle, indent=2)


if __name__ == "__main__":
    main()
