"""Per-call time of each tiny family on this machine: `python -m bench.families [--repeat N]`."""
from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
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
from models.types import (
    Control,
    EditRequest,
    ImageRequest,
    PromptRequest,
    StoryboardRequest,
    VideoRequest,
)


def png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def cases() -> dict[str, tuple[Callable[[], object], Callable[[object], object]]]:
    """name → (load, call) pairs on the tiny sources at 64², 2 steps."""
    from models.embedder import Embedder
    from models.flux import Flux
    from models.llm import LLM
    from models.sdxl import SDXL
    from models.svd import SVD
    from models.wan import Wan

    image = dict(width=64, height=64, steps=2, guidance=5.0, seed=0)
    video = dict(image=png(), num_frames=8, fps=7, **image)
    return {
        "llm.optimize": (lambda: LLM(LLMArgs(max_new_tokens=32)),
                         lambda m: m.optimize([PromptRequest(prompt="a fox in the snow")])),
        "llm.storyboard": (lambda: LLM(LLMArgs()),
                           lambda m: m.storyboard(StoryboardRequest(theme="a fox in winter", num_scenes=4))),
        "sdxl.generate": (lambda: SDXL(SDXLArgs()), lambda m: m.generate([ImageRequest(prompt="a fox", **image)])),
        "sdxl.controlled": (lambda: SDXL(SDXLArgs()), lambda m: m.generate(
            [ImageRequest(prompt="a fox", controls=(Control(type="canny", image=png()),), **image)])),
        "flux.generate": (lambda: Flux(FluxArgs(max_sequence_length=64)),
                          lambda m: m.generate([ImageRequest(prompt="a fox", **image)])),
        "flux.edit": (lambda: Flux(FluxArgs(max_sequence_length=64)),
                      lambda m: m.edit([EditRequest(prompt="make it night", image=png(), **image)])),
        "svd.animate": (lambda: SVD(SVDArgs()), lambda m: m.animate([VideoRequest(**video)])),
        "wan.animate": (lambda: Wan(WanArgs()), lambda m: m.animate([VideoRequest(**{**video, "num_frames": 9})])),
        "embedder.embed": (lambda: Embedder(EmbedderArgs(source=Source.PRETRAINED)),
                           lambda m: m.embed(["a red fox in the snow"] * 8)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    rows = []
    for name, (load, call) in tqdm(cases().items(), desc="benchmark", unit="call"):
        started = time.perf_counter()
        model = load()
        load_s = time.perf_counter() - started
        call(model)  # warm-up
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            call(model)
            times.append((time.perf_counter() - started) * 1000)
        rows.append(dict(call=name, load_s=round(load_s, 2), median_ms=round(statistics.median(times), 1),
                         min_ms=round(min(times), 1)))
    print(f"{'call':<18}{'load s':>8}{'median ms':>11}{'min ms':>9}")
    for row in rows:
        print(f"{row['call']:<18}{row['load_s']:>8}{row['median_ms']:>11}{row['min_ms']:>9}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
