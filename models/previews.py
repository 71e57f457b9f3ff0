"""Live previews: a job's predicted clean latents (x0) projected linearly to RGB, as small JPEGs.

The projection of each latent space is fitted once per replica, by least squares, to its own VAE's decodes of a few
random latents: the same code serves tiny, random and pretrained weights, with no learned preview decoder to ship.
"""
from __future__ import annotations

import io
import threading
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MAX_SIDE = 256  # longest side of a preview, in pixels
STRIP_FRAMES = 4  # frames side by side in a video's preview
QUALITY = 70
FIT_CELLS = 16  # latent grid of the calibration decodes
FIT_SAMPLES = 4

Decode = Callable[[torch.Tensor], torch.Tensor]
"""Latents (N, C, h, w) in the pipeline's own (scaled) space to images (N, 3, H, W) in [0, 1]."""


class Previewer:
    """Latent → RGB for one latent space of `channels` channels, decoded at `scale` pixels per latent cell."""

    def __init__(self, decode: Decode, channels: int, scale: int) -> None:
        self.decode = decode
        self.channels = channels
        self.scale = scale
        self._map: torch.Tensor | None = None  # (channels + 1, 3): weights, then bias
        self._lock = threading.Lock()

    def projection(self) -> torch.Tensor:
        with self._lock:
            if self._map is None:
                self._map = self._fit()
        return self._map

    @torch.inference_mode()
    def _fit(self) -> torch.Tensor:
        latents = torch.randn(FIT_SAMPLES, self.channels, FIT_CELLS, FIT_CELLS,
                              generator=torch.Generator().manual_seed(0))
        images = self.decode(latents).float().cpu()
        cells = F.adaptive_avg_pool2d(images, FIT_CELLS)  # the colour each latent cell decodes to
        inputs = latents.permute(0, 2, 3, 1).reshape(-1, self.channels)
        inputs = torch.cat([inputs, torch.ones(len(inputs), 1)], dim=1)
        targets = cells.permute(0, 2, 3, 1).reshape(-1, 3)
        return torch.linalg.lstsq(inputs, targets).solution

    def rgb(self, latents: torch.Tensor) -> np.ndarray:
        """Latents (N, C, h, w) to uint8 images (N, h, w, 3)."""
        projection = self.projection()
        cells = latents.detach().float().cpu().permute(0, 2, 3, 1)
        rgb = cells @ projection[:-1] + projection[-1]
        return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    def images(self, latents: torch.Tensor) -> list[bytes]:
        """One JPEG per image of latents (B, C, h, w)."""
        return [self._jpeg(image) for image in self.rgb(latents)]

    def clips(self, latents: torch.Tensor) -> list[bytes]:
        """One JPEG per clip of latents (B, F, C, h, w): a strip of frames from first to last."""
        previews = []
        for clip in latents:
            picks = np.unique(np.linspace(0, len(clip) - 1, min(STRIP_FRAMES, len(clip))).round().astype(int))
            previews.append(self._jpeg(np.concatenate(list(self.rgb(clip[picks])), axis=1)))
        return previews

    def _jpeg(self, image: np.ndarray) -> bytes:
        height, width = image.shape[:2]
        factor = min(self.scale, MAX_SIDE / max(height, width))
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        out = io.BytesIO()
        Image.fromarray(image).resize(size, Image.Resampling.BILINEAR).save(out, "JPEG", quality=QUALITY)
        return out.getvalue()
