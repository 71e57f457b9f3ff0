"""Forks: "more like this" at the cost of the steps left. A fork starts a new image job from a finished task's kept
step state (`StepPolicy.keep_steps`, kept `fork_ttl_s`): the state becomes the new task's first checkpoint, so the
replica resumes it as any checkpoint (deployments/base.py), with the fork's own prompt, adapters and seed."""
from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from composition.errors import Conflict, NotFound
from composition.schemas.common import AssetRef
from composition.schemas.forks import ForkOf
from composition.schemas.images import ImageOut, ImagesResult
from composition.store.timings import work_units
from composition.workflows.base import TaskContext, Workflow
from composition.workflows.images import ImageJob, ImagesWorkflow
from models.errors import InvalidRequest
from records.checkpoints import job_digest

FORKABLE = ("image", "fork")  # task kinds whose jobs keep step states a fork can start from


class ForkJob(BaseModel):
    """The fork's own image job (one seed), and the parent state it starts from."""

    image: ImageJob
    parent: str
    parent_seed: int
    step: int
    strength: float

    @property
    def forked_from(self) -> dict[str, Any]:
        return {"task_id": self.parent, "step": self.step}


class ForksWorkflow(Workflow[ForkJob]):
    kind = "fork"
    job_type = ForkJob
    quota = "images"

    def __init__(self, services, images: ImagesWorkflow) -> None:
        super().__init__(services)
        self.images = images

    async def plan(self, body: ForkOf) -> ForkJob:
        """The parent must have succeeded and still keep the step (404 once its states expired: `fork_ttl_s`)."""
        record = await self.services.tasks.get(body.parent)
        if record is None:
            raise NotFound(f"task {body.parent}", "task_id")
        if record.kind not in FORKABLE:
            raise InvalidRequest("task_id", f"a {record.kind} task does not fork; an image task does")
        if record.status != "succeeded":
            raise Conflict("task_id", f"task is {record.status}: only a succeeded task forks")
        parent = parent_image(record.kind, record.request or {})
        kept = await self.services.kept.steps(body.parent)
        seed = next((seed for seed in parent.seeds if seed in kept), None)
        if seed is None:
            raise NotFound(f"kept step states of task {body.parent} (expired: kept fork_ttl_s after it ran)",
                           "task_id")
        step = kept[seed][(len(kept[seed]) - 1) // 2] if body.step is None else body.step
        if step not in kept[seed]:
            raise InvalidRequest("step", f"task {body.parent} keeps steps {kept[seed]}")
        update: dict[str, Any] = dict(seeds=[seed if body.seed is None else body.seed], owner=body.user_id or "",
                                      output_format="png", quality=None, reuse=None)  # its own PNG, from the state
        if body.prompt is not None:
            update["prompt"] = body.prompt
        if body.loras is not None:
            await self.services.check_loras(parent.family, body.loras, "loras")
            update["loras"] = sorted(body.loras, key=lambda lora: lora.id)
        return ForkJob(image=parent.model_copy(update=update), parent=body.parent, parent_seed=seed, step=step,
                       strength=body.strength if body.seed is not None else 0.0)

    async def run(self, ctx: TaskContext, job: ForkJob) -> dict[str, Any]:
        image, seed = job.image, job.image.seeds[0]
        data = await self.services.kept.state(job.parent, job.parent_seed, job.step)
        if data is None:
            raise NotFound(f"kept step {job.step} of task {job.parent} (expired)", "step")
        await ctx.stage("preparing")
        from models.steps import StepState, start_from  # torch: loaded by the first fork, not by the ingress

        state = await asyncio.to_thread(lambda: start_from(StepState.from_bytes(data), job.strength, seed).to_bytes())
        controls, control_refs, source, mask = await self.images.inputs(image)
        request = self.images.request_for(image, seed, controls, source, mask)
        await self.services.kept.start(ctx.task_id, job_digest(request), state)
        await ctx.wait_for(image.family, work_units(image.width, image.height, image.steps - job.step))
        result = await self.images.call(image, request, ctx.task_id)
        await ctx.spend(image.family, result.metadata)
        asset = await self.images.stored(image, result, False, control_refs, {"fork": job.forked_from})
        metadata = result.metadata.model_dump() | {"control_maps": control_refs, "forked_from": job.forked_from}
        out = ImageOut(**AssetRef.of(asset.id).model_dump(), seed=seed, metadata=metadata)
        return ImagesResult(images=[out], prompt_key=image.prompt_key, cache_hit=False, match=image.match,
                            prompt_used=image.prompt).model_dump()


def parent_image(kind: str, request: dict[str, Any]) -> ImageJob:
    """The image job a forkable task stored."""
    return ImageJob.model_validate(request) if kind == "image" else ForkJob.model_validate(request).image
