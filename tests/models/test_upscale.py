"""Upscaling by tiled image to image: tiles cover every pixel, their blend weights sum to 1 at each, and the tiny SDXL
upscales ×2 tile by tile with progress over tiles × steps."""
from __future__ import annotations

import numpy as np
import pytest

import helpers
from config.families import SDXLArgs, Source
from models.sdxl import SDXL
from models.steps import Steps
from models.types import UpscaleRequest
from models.upscale import spans, weights


@pytest.mark.parametrize("length", [48, 100, 257, 4096])
@pytest.mark.parametrize("tile, overlap", [(64, 8), (1024, 128)])
def test_tiles_cover_every_pixel_and_their_weights_sum_to_1(length: int, tile: int, overlap: int) -> None:
    sides = spans(length, tile, overlap)
    assert sides[0][0] == 0 and sides[-1][1] == length
    assert all(end - start == min(tile, length) for start, end in sides)
    assert all(a[1] - b[0] >= overlap for a, b in zip(sides, sides[1:]))  # neighbours overlap enough
    coverage, total = np.zeros(length, int), np.zeros(length)
    for (start, end), weight in zip(sides, weights(sides, length), strict=True):
        assert weight.shape == (end - start,) and (weight > 0).all()
        coverage[start:end] += 1
        total[start:end] += weight
    assert (coverage >= 1).all()
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)
    # In two dimensions a tile's weight is the product of its row's and its column's: they sum to 1 as well.
    grid = sum(np.outer(wy, wx).sum() for wy in weights(sides, length) for wx in weights(sides, length))
    assert grid == pytest.approx(length * length)


def test_an_upscale_runs_each_tile_and_counts_tiles_times_steps_under_the_tile_control() -> None:
    model = SDXL(SDXLArgs(source=Source.TINY, device="cpu"))
    request = UpscaleRequest(image=helpers.png(48, 32, 3), width=96, height=64, steps=4, guidance=5.0, seed=1,
                             strength=0.5)
    seen: list[tuple[int, int, int]] = []
    modes: list[list[int]] = []  # the Union ControlNet's control types of each forward
    hook = model.union.controlnet.register_forward_pre_hook(
        lambda _module, _args, kwargs: modes.append(kwargs["control_type"][0].nonzero().flatten().tolist()),
        with_kwargs=True)
    try:
        (result,) = model.upscale([request], Steps(on_step=lambda b: seen.append(b.progress)))
    finally:
        hook.remove()
    assert modes == [[6]] * 4  # every step of both tiles: the tile control (the Union ProMax's mode 6) alone
    assert (result.width, result.height) == (96, 64)
    assert helpers.decode_png(result.png).size == (96, 64)
    assert seen == [(1, 4, 0), (2, 4, 0), (3, 4, 0), (4, 4, 0)]  # 2 tiles of 64² × 2 steps (4 × 0.5)
