"""Storyboard: LLM scenes → FLUX keyframes (batched) → Wan clips → one MP4 + GIF, JSON and text exports.
Every finished step is cached on the task, so a retried task resumes where it stopped."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from composition.schemas.common import AssetRef
from composition.schemas.storyboards import StoryboardBody, StoryboardOut
from composition.workflows.base import TaskContext, Workflow
from composition.workflows.videos import VideosWorkflow
from models.media import concat_mp4, decode_mp4, frames_to_gif
from models.types import ImageRequest, Scene


def scene_prompt(scene: Scene, style: str | None) -> str:
    parts = [scene.description, f"{scene.shot_type} shot", scene.visual_style, style]
    return ", ".join(part for part in parts if part)


def clip_frames(seconds: float, fps: int, frame_multiple: int) -> int:
    """Frames for a scene, rounded to what the video model accepts (k·multiple + 1)."""
    steps = max(1, round(seconds * fps / frame_multiple))
    return steps * frame_multiple + 1


def as_text(body: StoryboardBody, scenes: list[Scene]) -> str:
    lines = [f"STORYBOARD: {body.theme or 'script'}", ""]
    for number, scene in enumerate(scenes, 1):
        lines += [f"SCENE {number} ({scene.duration_s:g} s, {scene.shot_type}, camera {scene.camera_move})",
                  f"  {scene.description}", f"  style: {scene.visual_style}", ""]
    return "\n".join(lines)


class StoryboardsWorkflow(Workflow[StoryboardBody]):
    kind = "storyboard"
    request_type = StoryboardBody

    def __init__(self, services, videos: VideosWorkflow) -> None:
        super().__init__(services)
        self.videos = videos

    def size(self, body: StoryboardBody) -> tuple[int, int]:
        defaults = self.services.defaults_of("wan")
        return body.width or defaults.width, body.height or defaults.height

    async def plan(self, body: StoryboardBody) -> StoryboardBody:
        """Checks the size against both FLUX (keyframes) and Wan (clips) before queueing."""
        width, height = self.size(body)
        for family in ("flux", "wan"):
            await self.services.check_size(family, width, height)
        return body

    async def run(self, ctx: TaskContext, body: StoryboardBody) -> dict[str, Any]:
        scenes, fallback = await self._scenes(ctx, body)
        keyframes = await self._each(ctx, "keyframes", scenes, lambda i, s: self._keyframe(ctx, body, i, s))
        clips = await self._each(ctx, "clips", scenes, lambda i, s: self._clip(ctx, body, i, s, keyframes[i]))
        await ctx.stage("joining")
        fps = body.fps or self.services.defaults_of("wan").fps
        assets, owner = self.services.assets, body.user_id or ""
        joined = await asyncio.to_thread(concat_mp4, [await assets.read(c, user=owner) for c in clips], fps)
        gif = await asyncio.to_thread(lambda: frames_to_gif(decode_mp4(joined), fps, max_side=256))
        video = await assets.put(joined, "video/mp4", "generated", owner)
        gif_asset = await assets.put(gif, "image/gif", "generated", owner)
        await ctx.stage("exporting")
        export = {"theme": body.theme, "script": body.script, "scenes": [s.model_dump() for s in scenes],
                  "keyframes": keyframes, "clips": clips, "video": video.id, "gif": gif_asset.id}
        json_asset = await assets.put(json.dumps(export, indent=2).encode(), "application/json", "export", owner)
        text_asset = await assets.put(as_text(body, scenes).encode(), "text/plain; charset=utf-8", "export", owner)
        return StoryboardOut(
            scenes=export["scenes"], fallback=fallback, keyframes=[_ref(a) for a in keyframes],
            clips=[_ref(a) for a in clips], video=AssetRef(**video.ref()), gif=AssetRef(**gif_asset.ref()),
            export={"json": AssetRef(**json_asset.ref()), "text": AssetRef(**text_asset.ref())},
        ).model_dump(by_alias=True)

    async def _scenes(self, ctx: TaskContext, body: StoryboardBody) -> tuple[list[Scene], bool]:
        cached = await ctx.cached_step("scenes")
        if cached is None:
            await ctx.stage("scenes")
            board = await self.handle("llm").storyboard.remote(body.llm_request(), ctx.task_id)
            await self.services.timings.record("llm", board.metadata, 1)
            cached = {"scenes": [scene.model_dump() for scene in board.scenes], "fallback": board.fallback}
            await ctx.save_step("scenes", cached)
        return [Scene.model_validate(scene) for scene in cached["scenes"]], cached["fallback"]

    async def _each(self, ctx: TaskContext, stage: str, scenes: list[Scene], make) -> list[str]:
        """One asset per scene, cached per scene; scenes run concurrently so the deployments batch them."""
        await ctx.stage(stage)
        done = 0

        async def one(index: int, scene: Scene) -> str:
            nonlocal done
            step = f"{stage}:{index}"
            asset_id = await ctx.cached_step(step)
            if asset_id is None:
                asset_id = await make(index, scene)
                await ctx.save_step(step, asset_id)
            done += 1
            await ctx.stage(stage, done / len(scenes))
            return asset_id

        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(scenes))))

    async def _keyframe(self, ctx: TaskContext, body: StoryboardBody, index: int, scene: Scene) -> str:
        width, height = self.size(body)
        defaults = self.services.defaults_of("flux")
        request = ImageRequest(prompt=scene_prompt(scene, body.style), width=width, height=height,
                               steps=defaults.steps, guidance=defaults.guidance, seed=index)
        result = await self.handle("flux").generate.remote(request, ctx.task_id)
        return (await self.services.assets.put(result.png, "image/png", "generated", body.user_id or "",
                                               (width, height))).id

    async def _clip(self, ctx: TaskContext, body: StoryboardBody, index: int, scene: Scene, keyframe: str) -> str:
        width, height = self.size(body)
        fps = body.fps or self.services.defaults_of("wan").fps
        frames = clip_frames(body.scene_seconds or scene.duration_s, fps,
                             (await self.services.info("wan"))["frame_multiple"])
        job = await self.videos.job(keyframe, "wan", owner=body.user_id or "", prompt=scene.description,
                                    num_frames=frames, fps=fps, seed=index, gif=False, width=width, height=height)
        return (await self.videos.animate(ctx, job))["video"]["asset_id"]


def _ref(asset_id: str) -> AssetRef:
    return AssetRef(asset_id=asset_id, url=f"/v1/assets/{asset_id}")
