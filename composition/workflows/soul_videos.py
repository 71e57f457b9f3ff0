"""A soul's clip: soul + cue → the user's unseen variant image (as a soul's image) → a video (MP4 + GIF)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from composition.schemas.variants import SoulVideo, SoulVideoOut
from composition.workflows.base import TaskContext, Workflow
from composition.workflows.variants import VariantsWorkflow
from composition.workflows.videos import VideoJob, VideosWorkflow
from models.errors import InvalidRequest


class SoulVideoJob(BaseModel):
    """`video` has every option resolved; its image is the variant the task delivers."""

    soul_id: str
    cue: str
    user_id: str
    video: VideoJob


class SoulVideosWorkflow(Workflow[SoulVideoJob]):
    kind = "soul_video"
    job_type = SoulVideoJob
    quota = "videos"

    def __init__(self, services, variants: VariantsWorkflow, videos: VideosWorkflow) -> None:
        super().__init__(services)
        self.variants, self.videos = variants, videos

    async def plan(self, body: SoulVideo) -> SoulVideoJob:
        if not body.user_id:
            raise InvalidRequest("user_id", "required")
        image = (await self.variants.soul_prompt(body.soul_id, body.cue.strip())).body  # the variant's, as planned
        defaults = self.services.defaults_of(image.family)
        video = await self.videos.from_options("", body, (image.width or defaults.width,
                                                          image.height or defaults.height))
        return SoulVideoJob(soul_id=body.soul_id, cue=body.cue.strip(), user_id=body.user_id, video=video)

    async def run(self, ctx: TaskContext, job: SoulVideoJob) -> dict[str, Any]:
        soul = await self.variants.soul_prompt(job.soul_id, job.cue)
        image = await self.variants.deliver_in_task(ctx, soul, job.user_id)
        video = job.video.model_copy(update={"image": image["image"]["asset_id"],
                                             "prompt": job.video.prompt or soul.text})
        clip = await self.videos.run(ctx, video)
        details = {name: clip[name] for name in ("num_frames", "fps", "width", "height", "seed", "metadata")}
        return SoulVideoOut(**image, video=clip["video"], gif=clip["gif"], clip=details).model_dump()
