"""Writing: word → rendered glyphs → the style's control maps → SDXL + Union ControlNet in that style."""
from __future__ import annotations

import asyncio
from typing import Any

from composition.errors import ApiError
from composition.schemas.common import AssetRef
from composition.schemas.writing import WritingBody, WritingOut
from composition.store.timings import work_units
from composition.workflows.base import TaskContext, Workflow
from models.conditioning import control_map, missing_glyphs, render_text
from models.media import encode_png
from models.types import Control, ImageRequest


def conditioning_pngs(word: str, controls: list[str], width: int, height: int) -> dict[str, bytes]:
    """The glyph image and one control map per control type, as PNG."""
    glyph = render_text(word, width, height)
    return {"glyph": encode_png(glyph), **{kind: encode_png(control_map(kind, glyph)) for kind in controls}}


class WritingWorkflow(Workflow[WritingBody]):
    kind = "writing"
    request_type = WritingBody

    async def plan(self, body: WritingBody) -> WritingBody:
        if body.style not in self.services.catalogue.writing_styles:
            styles = ", ".join(sorted(self.services.catalogue.writing_styles))
            raise ApiError(422, "invalid_request", f"style: unknown writing style, use one of {styles}", "style")
        if not body.word.strip():
            raise ApiError(422, "invalid_request", "word: must not be blank", "word")
        if missing := missing_glyphs(body.word):
            raise ApiError(422, "invalid_request", f"word: the font cannot render {''.join(missing)!r}", "word")
        await self.services.check_size("sdxl", *self.size(body))
        return body

    def size(self, body: WritingBody) -> tuple[int, int]:
        defaults = self.services.defaults_of("sdxl")
        return body.width or defaults.width, body.height or defaults.height

    async def run(self, ctx: TaskContext, body: WritingBody) -> dict[str, Any]:
        style = self.services.catalogue.writing_styles[body.style]
        width, height = self.size(body)
        await ctx.stage("conditioning")
        pngs = await asyncio.to_thread(conditioning_pngs, body.word.strip(), list(style.controls), width, height)
        owner = body.user_id or ""
        refs = {kind: await self.services.assets.put(png, "image/png", "control", owner, (width, height))
                for kind, png in pngs.items()}
        prompt = style.render(body.word.strip(), body.translation or "")
        defaults = self.services.defaults_of("sdxl")
        request = ImageRequest(prompt=prompt, negative_prompt=style.negative_prompt, width=width, height=height,
                               steps=defaults.steps, guidance=defaults.guidance, seed=body.seed,
                               controls=tuple(Control(type=kind, image=pngs[kind], scale=scale)
                                              for kind, scale in style.controls.items()))
        await ctx.wait_for("sdxl", work_units(width, height, request.steps))
        result = await self.handle("sdxl").generate.remote(request, ctx.task_id)
        await self.services.timings.record("sdxl", result.metadata, work_units(width, height, request.steps))
        image = await self.services.assets.put(result.png, "image/png", "generated", owner, (width, height))
        return WritingOut(image=AssetRef(**image.ref()), conditioning={k: v.url for k, v in refs.items()},
                          controls=dict(style.controls), prompt_used=prompt,
                          metadata=result.metadata.model_dump()).model_dump()
