"""Per-user variants: deliver the unseen variant with the fewest deliveries, else generate one (up to a cap)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel

from composition.errors import ApiError
from composition.schemas.common import AssetRef
from composition.schemas.images import ImageGeneration
from composition.schemas.variants import SoulImageOut
from composition.store.prompts import Variant, slot_seed
from composition.workflows.base import TaskContext, Workflow
from composition.workflows.images import ImageJob, ImagesWorkflow, in_context

POOL_POLL_S = 0.1
VARIANT_WAIT_S = 60.0  # inside a task, for the variant pool when every slot is still rendering


class VariantJob(BaseModel):
    """One new variant (a reserved slot's seed) to render and deliver to `user_id`."""

    image: ImageJob
    user_id: str


class Delivery(BaseModel):
    """What the ingress decided: a result now, or a job to queue."""

    result: dict[str, Any] | None = None
    job: VariantJob | None = None


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
    request_type = VariantJob

    def __init__(self, services, images: ImagesWorkflow) -> None:
        super().__init__(services)
        self.images = images

    async def soul_prompt(self, soul_id: str, cue: str, scene: str = "") -> SoulPrompt:
        """The style and `scene` (a selfie's landmark) are the context; the cue alone is deduplicated within it,
        so "at the market" never resolves to "on deck" however much style text they share."""
        style = await self.services.styles.get(soul_id)
        context = ", ".join(part for part in (style.prompt, scene) if part)
        body = ImageGeneration(prompt=cue or context, negative_prompt=style.negative_prompt, model=style.model,
                               width=style.width, height=style.height, steps=style.steps)
        return SoulPrompt(body=body, context=context if cue else "")

    async def deliver(self, soul: SoulPrompt, user_id: str, wait_s: float) -> Delivery:
        """An unseen variant now (atomically marked seen), or a job for a fresh slot, or a repeat at the cap (when
        every slot is taken but none rendered yet, waits up to `wait_s` for the first one)."""
        job = await self.images.plan(soul.body, reserve=False, context=soul.context)
        prompts = self.services.prompts
        if vid := await prompts.deliver_unseen(job.prompt_key, user_id):
            return Delivery(result=self.result(job, await prompts.variant(vid), cache_hit=True))
        slot = await prompts.reserve_new_slot(job.prompt_key, self.services.args.variant_cap)
        if slot is None:
            vid = await self._first_rendered(job.prompt_key, wait_s)
            await prompts.deliver(job.prompt_key, vid, user_id)
            return Delivery(result=self.result(job, await prompts.variant(vid), cache_hit=True, repeat=True))
        job.seeds = [slot_seed(job.prompt_key, slot)]
        return Delivery(job=VariantJob(image=job, user_id=user_id))

    async def _first_rendered(self, prompt_key: str, wait_s: float) -> str:
        """The least delivered variant, once the other requests' tasks have rendered one."""
        deadline = time.monotonic() + wait_s
        while (vid := await self.services.prompts.least_delivered(prompt_key)) is None:
            if time.monotonic() >= deadline:
                raise ApiError(503, "busy", "the variant pool is full and still rendering; retry shortly",
                               headers={"Retry-After": "2"})
            await asyncio.sleep(POOL_POLL_S)
        return vid

    async def deliver_in_task(self, ctx: TaskContext, soul: SoulPrompt, user_id: str) -> dict[str, Any]:
        """Inside a task that goes on with the image (a selfie, a soul's clip): the user's unseen variant, or a new
        one rendered here; kept as the task's "image" step, so a retry goes on with the same variant."""
        image = await ctx.cached_step("image")
        if image is None:
            await ctx.stage("image")
            delivery = await self.deliver(soul, user_id, wait_s=VARIANT_WAIT_S)
            image = delivery.result or await self.run(ctx, delivery.job)
            await ctx.save_step("image", image)
        return image

    async def run(self, ctx: TaskContext, job: VariantJob) -> dict[str, Any]:
        (variant,) = await self.images.render(ctx, job.image)
        await self.services.prompts.deliver(job.image.prompt_key, variant.id, job.user_id)
        return self.result(job.image, variant, cache_hit=False)

    @staticmethod
    def result(job: ImageJob, variant: Variant, cache_hit: bool, repeat: bool = False) -> dict[str, Any]:
        image = AssetRef(asset_id=variant.asset_id, url=f"/v1/assets/{variant.asset_id}")
        return SoulImageOut(variant_id=variant.id, prompt_key=job.prompt_key, match=job.match, cache_hit=cache_hit,
                            repeat=repeat, metadata=variant.metadata, image=image).model_dump()
