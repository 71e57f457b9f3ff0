"""Image to video: an uploaded or generated image → SVD or Wan → MP4, WebM or GIF (+ GIF); text to video: a keyframe
made from the prompt first; estimates from measured times."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from composition.credentials.recipe import Recipe
from composition.schemas.common import AssetRef, ImageModel, VideoModel
from composition.schemas.videos import VideoEstimate, VideoGeneration, VideoOptions, VideoOut, VideoRemix
from composition.store.timings import work_units
from composition.workflows.base import TaskContext, Workflow
from config.acceleration import Acceleration
from models.errors import InvalidRequest
from models.formats import MEDIA_TYPES, VideoFormat
from models.types import ImageRequest, VideoRequest, VideoResult

PRIOR_MS_PER_UNIT = 50.0 / (64 * 64)  # per pixel-frame-step before anything was measured: tiny models on a CPU


class Keyframe(BaseModel):
    """Text to video: the image a task makes from its prompt before animating it (at the clip's size)."""

    model: ImageModel
    prompt: str
    steps: int
    guidance: float
    seed: int


class VideoJob(BaseModel):
    """A video request with every default resolved; `image` is empty until a text-to-video task made its keyframe."""

    image: str
    keyframe: Keyframe | None = None
    remixed_from: str | None = Field(default=None, description="the task whose source and settings this one reuses")
    prompt: str = ""
    model: VideoModel
    num_frames: int
    fps: int
    steps: int
    seed: int
    gif: bool
    width: int
    height: int
    owner: str = ""
    output_format: VideoFormat = "mp4"
    acceleration: Acceleration = "none"


class VideosWorkflow(Workflow[VideoJob]):
    kind = "video"
    job_type = VideoJob
    quota = "videos"

    async def plan(self, body: VideoGeneration) -> VideoJob:
        if body.image is not None:
            source = await self.services.image_asset(body.image, "image", body.user_id)
            job = await self.from_options(body.image, body, source.size)
            return job.model_copy(update={"remixed_from": body.remixed_from}) if isinstance(body, VideoRemix) else job
        if not body.prompt.strip():
            raise InvalidRequest("image", "give an image to animate, or a prompt to make its keyframe from")
        job = await self.from_options("", body, None)
        model = self.services.args.keyframe_model
        await self.services.check_size(model, job.width, job.height)
        defaults = self.services.defaults_of(model)
        return job.model_copy(update={"keyframe": Keyframe(model=model, prompt=body.prompt, steps=defaults.steps,
                                                           guidance=defaults.guidance, seed=job.seed)})

    async def from_options(self, image: str, options: VideoOptions,
                           source: tuple[int | None, int | None] | None) -> VideoJob:
        """The job animating `image` (of size `source`) as a request's video options ask."""
        return await self.job(image, options.model, owner=options.user_id or "", source=source, **options.model_dump(
            include={"prompt", "num_frames", "fps", "steps", "seed", "gif", "width", "height", "output_format",
                     "acceleration"}))

    async def job(self, image: str, model: VideoModel, owner: str = "",
                  source: tuple[int | None, int | None] | None = None, **options: Any) -> VideoJob:
        """Fills the family's defaults into unset options (the size: the source image's, as the family serves it)
        and checks the size."""
        defaults = self.services.defaults_of(model)
        fields = {name: options.get(name) or getattr(defaults, name) for name in ("num_frames", "fps", "steps")}
        width, height = await self.services.source_size(model, source)
        fields |= {"width": options.get("width") or width, "height": options.get("height") or height}
        await self.services.check_size(model, fields["width"], fields["height"], fields["num_frames"])
        return VideoJob(image=image, model=model, owner=owner, prompt=options.get("prompt") or "",
                        seed=options.get("seed") or 0, gif=options.get("gif", True),
                        output_format=options.get("output_format") or "mp4",
                        acceleration=options.get("acceleration") or "none", **fields)

    async def run(self, ctx: TaskContext, job: VideoJob) -> dict[str, Any]:
        """Text to video first makes its keyframe (stage "keyframe"); then waits for the model (stage "waiting") and
        renders the clip."""
        if job.keyframe is not None:
            job = job.model_copy(update={"image": await self.keyframe(ctx, job)})
        await ctx.wait_for(job.model, work_units(job.width, job.height, job.steps, job.num_frames))
        return await self.animate(ctx, job)

    async def keyframe(self, ctx: TaskContext, job: VideoJob) -> str:
        """The keyframe's asset, made once per task (a retried task reuses it)."""
        if (made := await ctx.cached_step("keyframe")) is not None:
            return made
        await ctx.stage("keyframe")
        frame = job.keyframe
        await ctx.wait_for(frame.model, work_units(job.width, job.height, frame.steps))
        asset_id = await self.render_keyframe(ctx, frame, job.width, job.height, job.owner)
        await ctx.save_step("keyframe", asset_id)
        return asset_id

    async def render_keyframe(self, ctx: TaskContext, frame: Keyframe, width: int, height: int, owner: str) -> str:
        """A text-to-image keyframe (a text-to-video's, a storyboard scene's), stored signed with its recipe."""
        request = ImageRequest(prompt=frame.prompt, width=width, height=height, steps=frame.steps,
                               guidance=frame.guidance, seed=frame.seed, watermark=self.services.watermark)
        result = await self.handle(frame.model).generate.remote(request, ctx.task_id)
        await ctx.spend(frame.model, result.metadata)
        recipe = Recipe.of(result.metadata.model_dump(), operation="generate", family=frame.model, seed=frame.seed,
                           steps=frame.steps, width=width, height=height, guidance=frame.guidance,
                           prompt=frame.prompt, format="png", watermark=self.services.watermark)
        return (await self.services.put_generated(result.png, "image/png", recipe, owner, (width, height))).id

    async def animate(self, ctx: TaskContext, job: VideoJob) -> dict[str, Any]:
        """Renders and stores one clip (the caller owns the task's stage), signed with the image as its source."""
        info = await self.services.asset(job.image, "image", job.owner)
        image = await self.services.assets.bytes_of(job.image)
        result = await self.clip(ctx.task_id, job, image, self.services.watermark)
        await ctx.spend(job.model, result.metadata)
        recipe = Recipe.of(result.metadata.model_dump(), operation="animate", family=job.model, seed=job.seed,
                           steps=job.steps, width=result.width, height=result.height, guidance=self.guidance(job.model),
                           prompt=job.prompt, source=job.image, num_frames=result.num_frames, fps=result.fps,
                           format=result.format, watermark=self.services.watermark, acceleration=job.acceleration)
        source = (image, info.content_type)
        video = await self.services.put_generated(result.video, MEDIA_TYPES[result.format], recipe, job.owner,
                                                  (result.width, result.height), source=source)
        gif = video if result.gif and result.format == "gif" else None  # the clip is the GIF: one asset
        if result.gif and gif is None:
            gif_recipe = recipe.model_copy(update={"format": "gif"})
            gif = await self.services.put_generated(result.gif, "image/gif", gif_recipe, job.owner, source=source)
        await self.services.timings.record(job.model, result.metadata,
                                           work_units(result.width, result.height, job.steps, result.num_frames))
        return VideoOut(video=AssetRef.of(video.id), format=result.format, gif=AssetRef.of(gif.id) if gif else None,
                        num_frames=result.num_frames, fps=result.fps, width=result.width, height=result.height,
                        seed=result.seed, metadata=result.metadata.model_dump(),
                        keyframe=AssetRef.of(job.image) if job.keyframe else None).model_dump()

    async def clip(self, task_id: str | None, job: VideoJob, image: bytes, watermark: bool) -> VideoResult:
        """One clip of `image` from the family's deployment (progress reported into `task_id`'s record)."""
        request = VideoRequest(image=image, prompt=job.prompt, num_frames=job.num_frames, fps=job.fps,
                               width=job.width, height=job.height, steps=job.steps, guidance=self.guidance(job.model),
                               seed=job.seed, gif=job.gif, output_format=job.output_format, watermark=watermark,
                               acceleration=job.acceleration)
        return await self.handle(job.model).animate.remote(request, task_id)

    def guidance(self, model: VideoModel) -> float:
        return self.services.defaults_of(model).guidance

    async def estimate(self, model: VideoModel, num_frames: int | None, steps: int | None, width: int | None,
                       height: int | None) -> VideoEstimate:
        """Model time of one clip from the family's measured cost: fixed + per pixel-frame-step."""
        job = await self.job("", model, num_frames=num_frames, steps=steps, width=width, height=height)
        units = work_units(job.width, job.height, job.steps, job.num_frames)
        cost = await self.services.timings.get(model)
        ms = cost.ms(units) if cost else PRIOR_MS_PER_UNIT * units
        return VideoEstimate(model=model, num_frames=job.num_frames, steps=job.steps, width=job.width,
                             height=job.height, seconds=round(ms / 1000.0, 3), measured=cost is not None,
                             samples=cost.samples if cost else 0)
