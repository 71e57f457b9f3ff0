"""Per-user variants: deliver the unseen variant with the fewest deliveries, else generate one (up to a cap)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, PrivateAttr

from composition.errors import ApiError
from composition.schemas.common import AssetRef, Notify, Prioritised
from composition.schemas.images import ImageGeneration
from composition.schemas.variants import SoulImageOut
from composition.store.variants import Variant, slot_seed, variant_id
from composition.workflows.base import TaskContext, Workflow
from composition.workflows.images import ImageJob, ImagesWorkflow, in_context
from models.errors import InvalidRequest

POOL_POLL_S = 0.1
VARIANT_WAIT_S = 60.0  # inside a task, for the variant pool when every slot is still rendering


class VariantJob(BaseModel):
    """One new variant (a reserved slot's seed) to render and deliver to `user_id`."""

    image: ImageJob
    user_id: str
    _wait_s: float = PrivateAttr(default=VARIANT_WAIT_S)  # for the pool's first variant, when at the cap


class SoulImage(Notify, Prioritised):
    """GET /v1/souls/{soul_id}/image as a request: the user's next unseen variant of the soul for `cue`."""

    soul_id: str
    cue: str = ""
    user_id: str | None = None
    wait_s: float = 60.0


class SoulPrompt(BaseModel):
    """A soul's request: `body.prompt` is what the user asked (the cue), rendered after the fixed `context`."""

    body: ImageGeneration
    context: str = ""

    @property
    def text(self) -> str:
        """The prompt as rendered."""
        return in_context(self.context, self.body.prompt)


class VariantsWorkflow(Workflow[VariantJob]):
    kind = "variant"
    job_type = VariantJob
    quota = "images"

    def __init__(self, services, images: ImagesWorkflow) -> None:
        super().__init__(services)
        self.images = images

    async def soul_prompt(self, soul_id: str, cue: str, scene: str = "") -> SoulPrompt:
        """The style and `scene` (a selfie's landmark) are the context; the cue alone is deduplicated within it,
        so "at the market" never resolves to "on deck" however much style text they share."""
        style = await self.services.style(soul_id)
        context = ", ".join(part for part in (style.prompt, scene) if part)
        body = ImageGeneration(prompt=cue or context, negative_prompt=style.negative_prompt, model=style.model,
                               width=style.width, height=style.height, steps=style.steps, loras=style.loras,
                               acceleration=style.acceleration)
        return SoulPrompt(body=body, context=context if cue else "")

    # In the ingress: an unseen variant now (atomically marked seen), else a job for a fresh slot, else a repeat.

    async def plan(self, request: SoulImage) -> VariantJob:
        if not request.user_id:
            raise InvalidRequest("user_id", "required")
        soul = await self.soul_prompt(request.soul_id, request.cue.strip())
        return await self.plan_soul(soul, request.user_id, request.wait_s)

    async def plan_soul(self, soul: SoulPrompt, user_id: str, wait_s: float) -> VariantJob:
        image = await self.images.plan(soul.body, context=soul.context, loras_field="style.loras")
        job = VariantJob(image=image, user_id=user_id)
        job._wait_s = wait_s
        return job

    async def cached(self, job: VariantJob) -> dict[str, Any] | None:
        pool = self.services.variants
        if vid := await pool.deliver_unseen(job.image.prompt_key, job.user_id):
            return self.result(job.image, await pool.variant(vid), cache_hit=True)
        return None

    async def reserve(self, job: VariantJob) -> VariantJob | dict[str, Any]:
        """A fresh slot's seed, or, when the pool is at its cap, the least delivered variant as a repeat (when
        every slot is taken but none rendered yet, waiting up to the request's wait for the first one)."""
        resolution = await self.images.dedup.commit(job.image._resolution)
        image = job.image.model_copy(update={"match": resolution.match, "prompt_key": resolution.prompt_key})
        pool = self.services.variants
        slot = await pool.reserve_new_slot(image.prompt_key, self.services.args.variant_cap)
        if slot is None:
            vid = await self._first_rendered(image.prompt_key, job._wait_s)
            await pool.deliver(image.prompt_key, vid, job.user_id)
            return self.result(image, await pool.variant(vid), cache_hit=True, repeat=True)
        image.seeds = [slot_seed(image.prompt_key, slot)]
        return VariantJob(image=image, user_id=job.user_id)

    async def _first_rendered(self, prompt_key: str, wait_s: float) -> str:
        """The least delivered variant, once the other requests' tasks have rendered one."""
        deadline = time.monotonic() + wait_s
        while (vid := await self.services.variants.least_delivered(prompt_key)) is None:
            if time.monotonic() >= deadline:
                raise ApiError(503, "busy", "the variant pool is full and still rendering; retry shortly",
                               headers={"Retry-After": "2"})
            await asyncio.sleep(POOL_POLL_S)
        return vid

    # In a task.

    async def deliver_in_task(self, ctx: TaskContext, soul: SoulPrompt, user_id: str) -> dict[str, Any]:
        """Inside a task that goes on with the image (a selfie, a soul's clip): the user's unseen variant, or a new
        one rendered here; kept as the task's "image" step, so a retry goes on with the same variant."""
        image = await ctx.cached_step("image")
        if image is None:
            await ctx.stage("image")
            job = await self.plan_soul(soul, user_id, VARIANT_WAIT_S)
            image = await self.cached(job) or await self.reserve(job)
            if isinstance(image, VariantJob):
                image = await self.run(ctx, image)
            await ctx.save_step("image", image)
        return image

    async def run(self, ctx: TaskContext, job: VariantJob) -> dict[str, Any]:
        """Renders the slot's variant for its user, seen by them before the pool has it: a concurrent request of
        theirs, taking an unseen variant, is never handed this one too."""
        pool = self.services.variants
        await pool.mark_seen(variant_id(job.image.prompt_key, job.image.seeds[0]), job.user_id)
        (variant,) = await self.images.render(ctx, job.image)
        await pool.deliver(job.image.prompt_key, variant.id, job.user_id)
        return self.result(job.image, variant, cache_hit=False)

    @staticmethod
    def result(job: ImageJob, variant: Variant, cache_hit: bool, repeat: bool = False) -> dict[str, Any]:
        return SoulImageOut(variant_id=variant.id, prompt_key=job.prompt_key, match=job.match, cache_hit=cache_hit,
                            repeat=repeat, metadata=variant.metadata, image=AssetRef.of(variant.asset_id)).model_dump()
