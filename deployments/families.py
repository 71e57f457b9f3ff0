"""One deployment class per diffusion family and the embedder, named by its spec (`config.specs`); plain classes,
testable without Ray. The LLM's is in `deployments/llm.py`: its decode engine (llguidance, inductor) stays out of these
replicas' imports.

Each class holds its own batch queues (`_<operation>`): `@serve.batch` methods, or for a diffusion family its
admitted operations (`deployments/admission.py`).
"""
from __future__ import annotations

import asyncio

from ray import serve

from deployments.base import BATCH_DEFAULTS, AdmittedMethod, ModelDeployment
from models.family import blank_png
from models.types import EditRequest, ImageRequest, ImageResult, UpscaleRequest, VideoRequest, VideoResult

PROBE_SIZE = 64  # health warm-up requests: 64² pixels, one step


def _probe_image() -> ImageRequest:
    return ImageRequest(prompt="a warm-up probe", width=PROBE_SIZE, height=PROBE_SIZE, steps=1, guidance=1.0, seed=0)


class _ImageDeployment(ModelDeployment):
    """Text to image (and image to image, inpainting: the same `generate`), shared by SDXL and FLUX."""

    _generate = AdmittedMethod("generate", "denoising")

    async def generate(self, request: ImageRequest, task_id: str | None = None) -> ImageResult:
        return await self.submit(self._generate, request, task_id)

    async def probe_requests(self) -> None:
        await self.generate(_probe_image())


class SDXLDeployment(_ImageDeployment):
    """Image generation, plus tiled upscaling (the Union ControlNet's tile control)."""

    _upscale = AdmittedMethod("upscale", "upscaling")

    async def upscale(self, request: UpscaleRequest, task_id: str | None = None) -> ImageResult:
        return await self.submit(self._upscale, request, task_id)


class FluxDeployment(_ImageDeployment):
    """Image generation, plus Kontext edits."""

    _edit = AdmittedMethod("edit", "editing")

    async def edit(self, request: EditRequest, task_id: str | None = None) -> ImageResult:
        return await self.submit(self._edit, request, task_id)

    async def probe_requests(self) -> None:
        image = _probe_image()
        await self.generate(image)
        await self.edit(EditRequest(image=blank_png(PROBE_SIZE, PROBE_SIZE), **image.model_dump(include=set(
            EditRequest.model_fields) - {"image"})))


class SVDDeployment(ModelDeployment):
    _animate = AdmittedMethod("animate", "animating")

    async def animate(self, request: VideoRequest, task_id: str | None = None) -> VideoResult:
        return await self.submit(self._animate, request, task_id)

    async def probe_requests(self) -> None:
        frames = 1 + self.model.frame_multiple
        await self.animate(VideoRequest(image=blank_png(PROBE_SIZE, PROBE_SIZE), num_frames=frames, fps=8,
                                        width=PROBE_SIZE, height=PROBE_SIZE, steps=1, guidance=1.0, seed=0))


class WanDeployment(SVDDeployment):
    """Image to video as SVD's, in its own batch queue."""

    _animate = AdmittedMethod("animate", "animating")


class EmbedderDeployment(ModelDeployment):
    async def embed(self, text: str) -> list[float]:
        return await self._embed(text)

    @serve.batch(**BATCH_DEFAULTS)
    async def _embed(self, texts: list[str]) -> list[list[float]]:
        return (await asyncio.to_thread(self.model.embed, texts)).tolist()

    async def probe_requests(self) -> None:
        await self.embed("a warm-up probe")

