"""Upscaling ×2 / ×4 by tiled image to image: the source resized to the target size, then each tile (the family's
native size, overlapping its neighbours) re-denoised at a low strength under the Union ControlNet's tile control (the
tile itself: detail added, content kept) and blended back with weights that sum to 1 at every pixel, so a large image
never takes one pass of its own size."""
from __future__ import annotations

import dataclasses
import io
import itertools
from collections.abc import Callable

import numpy as np
from PIL import Image

from models.images import decode_rgb
from models.steps import Steps
from models.types import Control, ImageRequest, UpscaleRequest

TILE_SCALE = 0.6  # the tile control's weight: high enough to hold the content, low enough to let detail in


def spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of the tiles along one side: `tile` long (the whole side when it is shorter), spread evenly from
    the side's start to its end, each overlapping the next by at least `overlap`."""
    if length <= tile:
        return [(0, length)]
    count = -(-(length - overlap) // (tile - overlap))
    return [(start, start + tile) for start in (round(i * (length - tile) / (count - 1)) for i in range(count))]


def weights(sides: list[tuple[int, int]], length: int) -> list[np.ndarray]:
    """Each tile's blend weight at every pixel of its span: 1 inside, falling linearly across an overlap with a
    neighbour, normalised so that the weights of the tiles covering a pixel sum to 1."""
    ramps = []
    for index, (start, end) in enumerate(sides):
        x = np.arange(start, end, dtype=np.float64)
        ramp = np.ones_like(x)
        if index > 0 and (overlap := sides[index - 1][1] - start) > 0:
            ramp = np.minimum(ramp, (x - start + 1) / (overlap + 1))
        if index < len(sides) - 1 and (overlap := end - sides[index + 1][0]) > 0:
            ramp = np.minimum(ramp, (end - x) / (overlap + 1))
        ramps.append(ramp)
    total = np.zeros(length)
    for (start, end), ramp in zip(sides, ramps, strict=True):
        total[start:end] += ramp
    return [ramp / total[start:end] for (start, end), ramp in zip(sides, ramps, strict=True)]


def upscaled(request: UpscaleRequest, tile: int, run: Callable[[list[ImageRequest], Steps], np.ndarray],
             steps: Steps | None) -> np.ndarray:
    """The float image (H, W, 3) of one upscale: every tile one `run` call of image to image; progress counts tiles ×
    steps (`Steps.part`). A retried upscale starts again from its first tile."""
    big = decode_rgb(request.image).resize((request.width, request.height), Image.LANCZOS)
    overlap = tile // 8
    xs, ys = spans(request.width, tile, overlap), spans(request.height, tile, overlap)
    wx, wy = weights(xs, request.width), weights(ys, request.height)
    out = np.zeros((request.height, request.width, 3), np.float64)
    tiles = list(itertools.product(range(len(ys)), range(len(xs))))
    for part, (j, i) in enumerate(tiles):
        (x0, x1), (y0, y1) = xs[i], ys[j]
        buffer = io.BytesIO()
        big.crop((x0, y0, x1, y1)).save(buffer, "PNG")
        tile = buffer.getvalue()
        tile_request = ImageRequest(prompt=request.prompt, negative_prompt=request.negative_prompt, width=x1 - x0,
                                    height=y1 - y0, steps=request.steps, guidance=request.guidance, seed=request.seed,
                                    image=tile, strength=request.strength, loras=request.loras,
                                    controls=(Control(type="tile", image=tile, scale=TILE_SCALE),))
        call_steps = dataclasses.replace(steps or Steps(), resume=None, part=(part, len(tiles)))
        image = run([tile_request], call_steps)[0]
        out[y0:y1, x0:x1] += image * wy[j][:, None, None] * wx[i][None, :, None]
    return out.astype(np.float32)
