"""The tiny SDXL pipeline in this process, on the replica's torch thread count (the in-process baselines)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def tiny_sdxl(threads: int) -> Iterator[Any]:
    """Yields `models.sdxl.SDXL` on the tiny source with torch limited to `threads`; restores the count after."""
    import torch

    from config.families import SDXLArgs
    from models.sdxl import SDXL

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield SDXL(SDXLArgs())
    finally:
        torch.set_num_threads(previous)
