"""One deployment class per model family; each a plain class (testable without Ray) with batched methods."""
from __future__ import annotations

import asyncio

from ray import serve

from config.families import EmbedderArgs, FluxArgs, LLMArgs, SDXLArgs, SVDArgs, WanArgs
from deployments.base import Job, ModelDeployment
from models.runtime import blank_png
from models.types import (
    EditRequest,
    ImageRequest,
    ImageResult,
    OptimizedPrompt,
    PromptRequest,
    Storyboard,
    StoryboardRequest,
    VideoRequest,
    VideoResult,
)

_BATCH = dict(max_batch_size=4, batch_wait_timeout_s=0.05)  # replaced by user_config at start
PROBE_SIZE = 64  # health warm-up requests: 64² pixels, one step


def _probe_image() -> ImageRequest:
    return ImageRequest(prompt="a warm-up probe", width=PROBE_SIZE, height=PROBE_SIZE, steps=1, guidance=1.0, seed=0)


def _one_group(request: object) -> int:
    return 0


class LLMDeployment(ModelDeployment):
    batch_methods = ("_optimize",)

    def __init__(self, args: LLMArgs, redis_url: str | None = None) -> None:
        from models.llm import PromptLLM

        super().__init__(PromptLLM(args), redis_url)

    async def optimize(self, request: PromptRequest) -> OptimizedPrompt:
        return await self.submit(self._optimize, request)

    @serve.batch(**_BATCH)
    async def _optimize(self, jobs: list[Job]) -> list[OptimizedPrompt]:
        return await self.execute(jobs, lambda requests, on_step: self.model.optimize(requests), _one_group,
                                  "optimize")

    async def storyboard(self, request: StoryboardRequest, task_id: str | None = None) -> Storyboard:
        (board,) = await self.execute([Job(request, task_id)],
                                      lambda requests, on_step: [self.model.storyboard(requests[0])], _one_group,
                                      "scenes")
        return board

    async def probe_requests(self) -> None:
        await self.optimize(PromptRequest(prompt="a warm-up probe"))


class SDXLDeployment(ModelDeployment):
    batch_methods = ("_generate",)

    def __init__(self, args: SDXLArgs, redis_url: str | None = None) -> None:
        from models.sdxl import SDXL

        super().__init__(SDXL(args), redis_url)

    async def generate(self, request: ImageRequest, task_id: str | None = None) -> ImageResult:
        return await self.submit(self._generate, request, task_id)

    @serve.batch(**_BATCH)
    async def _generate(self, jobs: list[Job]) -> list[ImageResult]:
        return await self.execute(jobs, self.model.generate, self.model.group_key, "denoising")

    async def probe_requests(self) -> None:
        await self.generate(_probe_image())


class FluxDeployment(ModelDeployment):
    batch_methods = ("_generate", "_edit")

    def __init__(self, args: FluxArgs, redis_url: str | None = None) -> None:
        from models.flux import Flux

        super().__init__(Flux(args), redis_url)

    async def generate(self, request: ImageRequest, task_id: str | None = None) -> ImageResult:
        return await self.submit(self._generate, request, task_id)

    async def edit(self, request: EditRequest, task_id: str | None = None) -> ImageResult:
        return await self.submit(self._edit, request, task_id)

    @serve.batch(**_BATCH)
    async def _generate(self, jobs: list[Job]) -> list[ImageResult]:
        return await self.execute(jobs, self.model.generate, self.model.group_key, "denoising")

    @serve.batch(**_BATCH)
    async def _edit(self, jobs: list[Job]) -> list[ImageResult]:
        return await self.execute(jobs, self.model.edit, self.model.group_key, "editing")

    async def probe_requests(self) -> None:
        image = _probe_image()
        await self.generate(image)
        await self.edit(EditRequest(image=blank_png(PROBE_SIZE, PROBE_SIZE), **image.model_dump(exclude={
            "negative_prompt", "controls"})))


class SVDDeployment(ModelDeployment):
    batch_methods = ("_animate",)

    def __init__(self, args: SVDArgs, redis_url: str | None = None) -> None:
        from models.svd import SVD

        super().__init__(SVD(args), redis_url)

    async def animate(self, request: VideoRequest, task_id: str | None = None) -> VideoResult:
        return await self.submit(self._animate, request, task_id)

    @serve.batch(**_BATCH)
    async def _animate(self, jobs: list[Job]) -> list[VideoResult]:
        return await self.execute(jobs, self.model.animate, self.model.group_key, "animating")

    async def probe_requests(self) -> None:
        frames = 1 + self.model.frame_multiple
        await self.animate(VideoRequest(image=blank_png(PROBE_SIZE, PROBE_SIZE), num_frames=frames, fps=8,
                                        width=PROBE_SIZE, height=PROBE_SIZE, steps=1, guidance=1.0, seed=0))


class WanDeployment(SVDDeployment):
    def __init__(self, args: WanArgs, redis_url: str | None = None) -> None:
        from models.wan import Wan

        ModelDeployment.__init__(self, Wan(args), redis_url)


class EmbedderDeployment(ModelDeployment):
    batch_methods = ("_embed",)

    def __init__(self, args: EmbedderArgs, redis_url: str | None = None) -> None:
        from models.embedder import Embedder

        super().__init__(Embedder(args), redis_url)

    async def embed(self, text: str) -> list[float]:
        return await self._embed(text)

    @serve.batch(**_BATCH)
    async def _embed(self, texts: list[str]) -> list[list[float]]:
        return (await asyncio.to_thread(self.model.embed, texts)).tolist()

    async def probe_requests(self) -> None:
        await self.embed("a warm-up probe")


DEPLOYMENTS: dict[str, tuple[str, type[ModelDeployment]]] = {
    "llm": ("PromptLLM", LLMDeployment),
    "sdxl": ("SDXL", SDXLDeployment),
    "flux": ("Flux", FluxDeployment),
    "svd": ("SVD", SVDDeployment),
    "wan": ("Wan", WanDeployment),
    "embedder": ("Embedder", EmbedderDeployment),
}
"""Family key → (stable deployment name, class). Serve configs override deployments by these names."""
