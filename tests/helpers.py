"""Small builders shared by tests."""
from __future__ import annotations

BASE = "http://127.0.0.1:18000"  # Serve's HTTP proxy in tests
METRICS_PORT = 18080  # Ray's Prometheus endpoint in tests (`montage up` uses 8080)

import io

import numpy as np
from PIL import Image


def png(width: int = 64, height: int = 64, seed: int = 0, mode: str = "RGB") -> bytes:
    """A random-noise image encoded as PNG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


def meta_params(factory) -> float:
    """Parameter count in billions of a module built on the meta device (no memory, no init cost)."""
    import torch

    with torch.device("meta"):
        module = factory()
    return sum(p.numel() for p in module.parameters()) / 1e9


def decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
