"""Selfie: style profile + city + mood → a landmark not seen recently → a variant image (+ clip and GIF)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from composition.schemas.common import AssetRef, VideoModel
from composition.schemas.selfies import SelfieBody, SelfieOut
from composition.workflows.base import TaskContext, Workflow
from composition.workflows.variants import VariantsWorkflow
from composition.workflows.videos import VideosWorkflow
from models.errors import InvalidRequest


class SelfieJob(BaseModel):
    """The chosen landmark travels with the task, so a retry draws the same place."""

    soul_id: str
    city_key: str
    mood: str
    user_id: str
    video: VideoModel | None = None
    landmark_key: str = ""  # drawn by `reserve`


class SelfiesWorkflow(Workflow[SelfieJob]):
    kind = "selfie"
    job_type = SelfieJob
    quota = "images"
    WAIT_S, VIDEO_WAIT_S = 60.0, 0.0  # a selfie's default wait: its image, or none when a clip follows

    def __init__(self, services, variants: VariantsWorkflow, videos: VideosWorkflow) -> None:
        super().__init__(services)
        self.variants, self.videos = variants, videos

    async def plan(self, body: SelfieBody) -> SelfieJob:
        await self.services.style(body.soul_id)
        if body.city_key not in self.services.catalogue.cities:
            raise InvalidRequest("city_key", f"unknown city {body.city_key!r}")
        return SelfieJob(**body.model_dump(include={"soul_id", "city_key", "mood", "user_id", "video"}))

    async def reserve(self, job: SelfieJob) -> SelfieJob:
        """The landmark, drawn once the request may proceed (it becomes one of the user's recent places)."""
        city = self.services.catalogue.cities[job.city_key]
        landmark = await self.services.landmarks.choose(job.soul_id, job.user_id, city.key,
                                                        [landmark.key for landmark in city.landmarks],
                                                        self.services.args.recent_landmarks)
        return job.model_copy(update={"landmark_key": landmark})

    def wait_s(self, body: SelfieBody) -> float:
        return body.wait_s if body.wait_s is not None else (self.VIDEO_WAIT_S if body.video else self.WAIT_S)

    async def run(self, ctx: TaskContext, job: SelfieJob) -> dict[str, Any]:
        city = self.services.catalogue.cities[job.city_key]
        landmark = city.landmark(job.landmark_key)
        mood = self.services.catalogue.moods.get(job.mood, job.mood)
        scene = f"taking a selfie in front of {landmark.prompt}, {city.name}"
        soul = await self.variants.soul_prompt(job.soul_id, mood, scene)  # the landmark is in the scope
        image = await self.variants.deliver_in_task(ctx, soul, job.user_id)
        out = SelfieOut(**image, landmark_key=landmark.key, city_key=city.key)
        if job.video:
            source = await self.services.asset(out.image.asset_id, "image", job.user_id)
            video_job = await self.videos.job(out.image.asset_id, job.video, owner=job.user_id, source=source.size,
                                              prompt=f"{scene}, {mood}", gif=True)
            clip = await self.videos.run(ctx, video_job)
            out.video, out.gif = AssetRef(**clip["video"]), AssetRef(**clip["gif"])
        return out.model_dump()
