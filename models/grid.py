"""The latent grid's pure rules, shared by a replica and the ingress (which checks and sizes before queueing): no
torch, so the ingress and the runner import them without a model's libraries."""
from __future__ import annotations

import math

from models.errors import InvalidRequest
from models.types import MAX_SIDE


def check_grid(family: str, size_multiple: int, frame_multiple: int, width: int, height: int,
               num_frames: int | None = None) -> None:
    """The latent grid's rule, for a replica and for the ingress (which checks before queueing): width and height
    multiples of `size_multiple`, num_frames `frame_multiple`·k + 1; `InvalidRequest` naming the field otherwise."""
    for field, value in (("width", width), ("height", height)):
        if value % size_multiple:
            raise InvalidRequest(field, f"must be a multiple of {size_multiple} for {family}")
    if num_frames is not None and (num_frames - 1) % frame_multiple:
        raise InvalidRequest("num_frames", f"must be {frame_multiple}k + 1 for {family}")


def fit_size(width: int, height: int, size_multiple: int, max_pixels: int | None) -> tuple[int, int]:
    """The size a family serves for a source image of width × height: the source's own, each side rounded to the
    grid (`size_multiple`, and 8), when that fits the family's limits (MAX_SIDE a side, `max_pixels` a frame); else
    the largest size of the source's aspect that does."""
    grid, limit = math.lcm(size_multiple, 8), max_pixels or MAX_SIDE ** 2

    def rounded(side: float) -> int:
        return max(grid, round(side / grid) * grid)

    def fits(size: tuple[int, int]) -> bool:
        return max(size) <= MAX_SIDE and size[0] * size[1] <= limit

    if fits(size := (rounded(width), rounded(height))):
        return size
    ratio = min(width, height) / max(width, height)
    for long in range(MAX_SIDE // grid * grid, grid - 1, -grid):  # the largest first; the last, grid², fits
        short = rounded(long * ratio)
        if fits(size := (long, short) if width >= height else (short, long)):
            return size
    raise AssertionError("unreachable: a grid² frame fits every family")
