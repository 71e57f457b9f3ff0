"""Selfie: style profile + city + mood → a landmark not seen recently → a variant image (+ clip and GIF)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from composition.errors import ApiError
from composition.schemas.common import AssetRef
from composition.schemas.selfies import SelfieBody, SelfieOut
from composition.workflows.base import TaskContext, Workflow
from composition.workflows.variants import VariantsWorkflow
from composition.workflows.videos import VideosWorkflow


class SelfieJob(BaseModel):
    """The chosen landmark travels with the task, so a retry draws the same place."""

    body: SelfieBody
    landmark_key: str


class SelfiesWorkflow(Workflow[SelfieJob]):
    kind = "selfie"
    request_type = SelfieJob

    def __init__(self, services, variants: VariantsWorkflow, videos: VideosWorkflow) -> None:
        super().__init__(services)
        self.variants, self.videos = variants, videos

    async def plan(self, body: SelfieBody) -> SelfieJob:
        await self.services.styles.get(body.soul_id)
        city = self.services.catalogue.cities.get(body.city_key)
        if city is None:
            raise ApiError(422, "invalid_request", f"city_key: unknown city {body.city_key!r}", "city_key")
        landmark = await self.services.landmarks.choose(body.soul_id, body.user_id, city.key,
                                                        [landmark.key for landmark in city.landmarks],
                                                        self.services.args.recent_landmarks)
        return SelfieJob(body=body, landmark_key=landmark)

    async def run(self, ctx: TaskContext, job: SelfieJob) -> dict[str, Any]:
        body = job.body
        city = self.services.catalogue.cities[body.city_key]
        landmark = city.landmark(job.landmark_key)
        mood = self.services.catalogue.moods.get(body.mood, body.mood)
        scene = f"taking a selfie in front of {landmark.prompt}, {city.name}"
        soul = await self.variants.soul_prompt(body.soul_id, mood, scene)  # the landmark is in the scope
        image = await self.variants.deliver_in_task(ctx, soul, body.user_id)
        out = SelfieOut(**image, landmark_key=landmark.key, city_key=city.key)
        if body.video:
            video_job = await self.videos.job(out.image.asset_id, body.video, owner=body.user_id,
                                              prompt=f"{scene}, {mood}", gif=True)
            clip = await self.videos.run(ctx, video_job)
            out.video, out.gif = AssetRef(**clip["video"]), AssetRef(**clip["gif"])
        return out.model_dump()
