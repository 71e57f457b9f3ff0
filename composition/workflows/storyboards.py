"""Storyboard: LLM scenes → FLUX keyframes (batched) → Wan clips → one MP4 + GIF, JSON and text exports.
Every finished step is cached on the task, so a retried task resumes where it stopped."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel, Field

from composition.credentials.recipe import Recipe
from composition.schemas.common import AssetRef
from composition.schemas.storyboards import StoryboardBody, StoryboardOut
from composition.store.timings import work_units
from composition.workflows.base import TaskContext, Workflow
from composition.workflows.videos import Keyframe, VideosWorkflow
from models.media import concat_mp4, decode_mp4, frames_to_gif
from models.errors import InvalidRequest
from models.types import MAX_FRAMES, Scene, StoryboardRequest


def scene_prompt(scene: Scene, style: str | None) -> str:
    parts = [scene.description, f"{scene.shot_type} shot", scene.visual_style, style]
    return ", ".join(part for part in parts if part)


def clip_frames(seconds: float, fps: int, frame_multiple: int) -> int:
    """Frames for a scene, rounded to what the video model accepts (k·multiple + 1)."""
    steps = max(1, round(seconds * fps / frame_multiple))
    return steps * frame_multiple + 1


def longest_clip(frame_multiple: int) -> int:
    """The most frames of a clip the video model accepts (k·multiple + 1 ≤ `MAX_FRAMES`)."""
    return (MAX_FRAMES - 1) // frame_multiple * frame_multiple + 1


class StoryboardJob(BaseModel):
    """The LLM's request and the clips' size and rate, resolved."""

    llm: StoryboardRequest
    scene_seconds: float | None = Field(description="None: each scene's own duration")
    fps: int
    width: int
    height: int
    owner: str = ""


def as_text(job: StoryboardJob, scenes: list[Scene]) -> str:
    lines = [f"STORYBOARD: {job.llm.theme or 'script'}", ""]
    for number, scene in enumerate(scenes, 1):
        lines += [f"SCENE {number} ({scene.duration_s:g} s, {scene.shot_type}, camera {scene.camera_move})",
                  f"  {scene.description}", f"  style: {scene.visual_style}", ""]
    return "\n".join(lines)


class StoryboardsWorkflow(Workflow[StoryboardJob]):
    kind = "storyboard"
    job_type = StoryboardJob
    quota = "storyboards"
    # The whole storyboard's progress: on a GPU the clips are most of its time (BENCHMARKS.md: a Wan clip takes
    # minutes, a FLUX keyframe seconds)
    shares = {"scenes": 0.05, "keyframes": 0.15, "clips": 0.75, "joining": 0.04, "exporting": 0.01}

    def __init__(self, services, videos: VideosWorkflow) -> None:
        super().__init__(services)
        self.videos = videos

    async def plan(self, body: StoryboardBody) -> StoryboardJob:
        """Checks the size against both FLUX (keyframes) and Wan (clips), and the clips' length, before queueing."""
        defaults = self.services.defaults_of("wan")
        width, height = body.width or defaults.width, body.height or defaults.height
        for family in ("flux", "wan"):
            await self.services.check_size(family, width, height)
        fps = body.fps or defaults.fps
        if body.scene_seconds is not None:
            multiple = (await self.services.info("wan"))["frame_multiple"]
            if (frames := clip_frames(body.scene_seconds, fps, multiple)) > longest_clip(multiple):
                longest = longest_clip(multiple) / fps
                raise InvalidRequest("scene_seconds", f"{body.scene_seconds:g} s at {fps} fps is {frames} frames; a "
                                                      f"clip has at most {MAX_FRAMES} ({longest:.1f} s at {fps} fps)")
        return StoryboardJob(llm=body.llm_request(), scene_seconds=body.scene_seconds, fps=fps, width=width,
                             height=height, owner=body.user_id or "")

    async def run(self, ctx: TaskContext, job: StoryboardJob) -> dict[str, Any]:
        scenes, fallback = await self._scenes(ctx, job)
        flux, wan = self.services.defaults_of("flux"), self.services.defaults_of("wan")
        keyframes = await self._each(ctx, "keyframes", scenes, lambda i, s: self._keyframe(ctx, job, i, s),
                                     "flux", len(scenes) * work_units(job.width, job.height, flux.steps))
        frames = [await self._frames(job, scene) for scene in scenes]
        clips = await self._each(ctx, "clips", scenes, lambda i, s: self._clip(ctx, job, i, s, keyframes[i], frames[i]),
                                 "wan", sum(work_units(job.width, job.height, wan.steps, f) for f in frames))
        await ctx.stage("joining")
        assets, owner, fps = self.services.assets, job.owner, job.fps
        joined = await asyncio.to_thread(concat_mp4, [await self.services.asset_bytes(c, "clips", owner)
                                                      for c in clips], fps)
        gif = await asyncio.to_thread(lambda: frames_to_gif(decode_mp4(joined), fps, max_side=256))
        recipe = await self._joined_recipe(job, clips)
        video = await self.services.put_generated(joined, "video/mp4", recipe, owner)
        gif_asset = await self.services.put_generated(gif, "image/gif", recipe.model_copy(update={"format": "gif"}),
                                                      owner)
        await ctx.stage("exporting")
        export = {"theme": job.llm.theme, "script": job.llm.script, "scenes": [s.model_dump() for s in scenes],
                  "keyframes": keyframes, "clips": clips, "video": video.id, "gif": gif_asset.id}
        json_asset = await assets.put(json.dumps(export, indent=2).encode(), "application/json", "export", owner)
        text_asset = await assets.put(as_text(job, scenes).encode(), "text/plain; charset=utf-8", "export", owner)
        return StoryboardOut(
            scenes=export["scenes"], fallback=fallback, keyframes=[AssetRef.of(a) for a in keyframes],
            clips=[AssetRef.of(a) for a in clips], video=AssetRef.of(video.id), gif=AssetRef.of(gif_asset.id),
            export={"json": AssetRef.of(json_asset.id), "text": AssetRef.of(text_asset.id)},
        ).model_dump(by_alias=True)

    async def _joined_recipe(self, job: StoryboardJob, clips: list[str]) -> Recipe:
        """The joined video's recipe: its clips' model and settings (the first clip's), the clips as its parts."""
        first = Recipe.model_validate_json(await self.services.assets.recipe(clips[0]))
        return first.model_copy(update=dict(operation="storyboard", parts=clips, source=None, seed=0,
                                            prompt=job.llm.theme or job.llm.script or "", num_frames=None,
                                            format="mp4"))

    async def _scenes(self, ctx: TaskContext, job: StoryboardJob) -> tuple[list[Scene], bool]:
        cached = await ctx.cached_step("scenes")
        if cached is None:
            await ctx.stage("scenes")
            board = await self.handle("llm").storyboard.remote(job.llm, ctx.task_id)
            await self.services.timings.record("llm", board.metadata, 1)
            cached = {"scenes": [scene.model_dump() for scene in board.scenes], "fallback": board.fallback}
            await ctx.save_step("scenes", cached)
        return [Scene.model_validate(scene) for scene in cached["scenes"]], cached["fallback"]

    async def _each(self, ctx: TaskContext, stage: str, scenes: list[Scene], make, family: str,
                    units: int) -> list[str]:
        """One asset per scene, cached per scene; scenes run concurrently so the deployments batch them. The task
        waits for `family`'s replicas (`units` of work in all) until a scene's model work starts."""
        await ctx.stage(stage, 0, len(scenes))
        await ctx.wait_for(family, units)
        done = 0

        async def one(index: int, scene: Scene) -> str:
            nonlocal done
            step = f"{stage}:{index}"
            asset_id = await ctx.cached_step(step)
            if asset_id is None:
                asset_id = await make(index, scene)
                await ctx.save_step(step, asset_id)
            done += 1
            await ctx.stage(stage, done, len(scenes))
            return asset_id

        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(scenes))))

    async def _keyframe(self, ctx: TaskContext, job: StoryboardJob, index: int, scene: Scene) -> str:
        defaults = self.services.defaults_of("flux")
        frame = Keyframe(model="flux", prompt=scene_prompt(scene, job.llm.style), steps=defaults.steps,
                         guidance=defaults.guidance, seed=index)
        return await self.videos.render_keyframe(ctx, frame, job.width, job.height, job.owner)

    async def _frames(self, job: StoryboardJob, scene: Scene) -> int:
        """A scene's clip frames at the job's rate; a longer scene than the longest clip gets the longest."""
        multiple = (await self.services.info("wan"))["frame_multiple"]
        return min(clip_frames(job.scene_seconds or scene.duration_s, job.fps, multiple), longest_clip(multiple))

    async def _clip(self, ctx: TaskContext, job: StoryboardJob, index: int, scene: Scene, keyframe: str,
                    frames: int) -> str:
        clip = await self.videos.job(keyframe, "wan", owner=job.owner, prompt=scene.description, num_frames=frames,
                                     fps=job.fps, seed=index, gif=False, width=job.width, height=job.height)
        return (await self.videos.animate(ctx, clip))["video"]["asset_id"]
