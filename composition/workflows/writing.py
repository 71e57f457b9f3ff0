"""Writing: word → rendered glyphs → the style's control maps → SDXL + Union ControlNet in that style."""
from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from composition.credentials.recipe import Recipe, RecipeControl
from composition.schemas.common import AssetRef
from composition.schemas.writing import WritingBody, WritingOut
from composition.store.timings import work_units
from composition.workflows.base import TaskContext, Workflow
from models.errors import InvalidRequest
from models.conditioning import control_map, missing_glyphs, render_text
from models.media import encode_png
from models.types import Control, ImageRequest


def conditioning_pngs(word: str, controls: list[str], width: int, height: int) -> dict[str, bytes]:
    """The glyph image and one control map per control type, as PNG."""
    glyph = render_text(word, width, height)
    return {"glyph": encode_png(glyph), **{kind: encode_png(control_map(kind, glyph)) for kind in controls}}


class WritingJob(BaseModel):
    """A word to draw, with its size resolved."""

    word: str
    translation: str = ""
    style: str
    width: int
    height: int
    seed: int
    owner: str = ""


class WritingWorkflow(Workflow[WritingJob]):
    kind = "writing"
    job_type = WritingJob
    quota = "images"

    async def plan(self, body: WritingBody) -> WritingJob:
        if body.style not in self.services.catalogue.writing_styles:
            styles = ", ".join(sorted(self.services.catalogue.writing_styles))
            raise InvalidRequest("style", f"unknown writing style, use one of {styles}")
        if not body.word.strip():
            raise InvalidRequest("word", "must not be blank")
        if missing := missing_glyphs(body.word):
            raise InvalidRequest("word", f"the font cannot render {''.join(missing)!r}")
        defaults = self.services.defaults_of("sdxl")
        width, height = body.width or defaults.width, body.height or defaults.height
        await self.services.check_size("sdxl", width, height)
        return WritingJob(word=body.word.strip(), translation=body.translation or "", style=body.style, width=width,
                          height=height, seed=body.seed, owner=body.user_id or "")

    async def run(self, ctx: TaskContext, job: WritingJob) -> dict[str, Any]:
        style = self.services.catalogue.writing_styles[job.style]
        width, height, owner = job.width, job.height, job.owner
        await ctx.stage("conditioning")
        pngs = await asyncio.to_thread(conditioning_pngs, job.word, list(style.controls), width, height)
        refs = {kind: await self.services.assets.put(png, "image/png", "control", owner, (width, height))
                for kind, png in pngs.items()}
        prompt = style.render(job.word, job.translation)
        defaults = self.services.defaults_of("sdxl")
        request = ImageRequest(prompt=prompt, negative_prompt=style.negative_prompt, width=width, height=height,
                               steps=defaults.steps, guidance=defaults.guidance, seed=job.seed,
                               watermark=self.services.watermark,
                               controls=tuple(Control(type=kind, image=pngs[kind], scale=scale)
                                              for kind, scale in style.controls.items()))
        await ctx.wait_for("sdxl", work_units(width, height, request.steps))
        result = await self.handle("sdxl").generate.remote(request, ctx.task_id)
        await ctx.spend("sdxl", result.metadata)
        await self.services.timings.record("sdxl", result.metadata, work_units(width, height, request.steps))
        recipe = Recipe.of(result.metadata.model_dump(), operation="generate", family="sdxl", seed=job.seed,
                           steps=request.steps, width=width, height=height, guidance=request.guidance, prompt=prompt,
                           negative_prompt=style.negative_prompt, format="png", watermark=self.services.watermark,
                           controls=[RecipeControl(type=kind, image=refs[kind].id, scale=scale)
                                     for kind, scale in style.controls.items()])
        image = await self.services.put_generated(result.png, "image/png", recipe, owner, (width, height))
        return WritingOut(image=AssetRef.of(image.id), conditioning={k: v.url for k, v in refs.items()},
                          controls=dict(style.controls), prompt_used=prompt,
                          metadata=result.metadata.model_dump()).model_dump()
