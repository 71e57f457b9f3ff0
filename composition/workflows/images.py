"""Images: plan (dedup → prompt key → wanted seeds) in the ingress; render the missing variants in a task."""
from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

from pydantic import BaseModel, PrivateAttr

from composition.credentials.recipe import Recipe, RecipeAdapter, RecipeControl
from composition.metrics import service_metrics
from composition.schemas.common import AssetRef, ImageModel, Match
from composition.schemas.images import (
    ControlledGeneration,
    ControlMapOut,
    ControlSpec,
    ImageEdit,
    ImageGeneration,
    ImageOut,
    ImageInpaint,
    ImageOutpaint,
    ImagesResult,
    ImageUpscale,
)
from composition.store.variants import Variant, slot_seed
from composition.store.timings import work_units
from composition.workflows.base import TaskContext, Workflow
from composition.dedup.resolve import Dedup, Resolution, scope_of
from config.acceleration import Acceleration
from records.checkpoints import job_digest
from records.task_record import TERMINAL
from models.conditioning import control_map
from models.errors import InvalidRequest
from models.formats import MEDIA_TYPES, ImageFormat
from models.images import decode_rgb, mask_png, outpaint_canvas, outpaint_geometry, repaint_mask
from models.media import DEFAULT_QUALITY, encode_image, encode_png
from models.types import (MAX_SEED, MAX_SIDE, MAX_UPSCALED_SIDE, UPSCALE_PROMPT, Control, EditRequest, ImageRequest,
                          Lora, UpscaleRequest, adapter_key, start_step)

RENDER_POLL_S = 0.1  # a task waiting for a variant that another task renders looks this often


class ReuseFrom(BaseModel):
    """A similar prompt's kept latent the job's first variant starts from, at the kept step at or before `step`
    (mapped from the similarity by `reuse.mapping` when planned)."""

    prompt_key: str
    similarity: float
    step: int


class ImageJob(BaseModel):
    """A planned image request, as stored in its task: everything needed to render it, no bytes."""

    operation: Literal["generate", "edit", "inpaint", "outpaint", "upscale"]
    family: ImageModel
    prompt: str
    negative_prompt: str = ""
    width: int
    height: int
    steps: int
    guidance: float
    seeds: list[int]
    prompt_key: str
    match: Match
    controls: list[ControlSpec] = []
    loras: list[Lora] = []
    source: str | None = None
    strength: float | None = None  # image to image (`source`): the share of the steps run
    mask: str | None = None  # inpainting: the mask's asset (white = repaint); none: the source's transparent pixels
    canvas: tuple[int, int, int, int] | None = None  # outpainting: the source's place (left, top) and the size
    true_cfg_scale: float = 1.0  # FLUX: over 1, true classifier-free guidance (the negative prompt counts)
    prompt_weighting: bool = False  # SDXL: `(word:1.3)` weights read (compel)
    acceleration: Acceleration = "none"  # step_cache: the family's step cache (other pixels: part of the dedup scope)
    owner: str = ""
    output_format: ImageFormat = "png"
    quality: int | None = None
    reuse: ReuseFrom | None = None
    _resolution: Resolution | None = PrivateAttr(default=None)  # planned, not yet committed (never stored)
    _slots: int = PrivateAttr(default=0)  # the prompt key's first variant slots the request takes

    @property
    def shared(self) -> bool:
        """Text-only generations: the prompt cache serves them to every user, so their images are readable by all."""
        return self.operation == "generate" and not self.controls and self.source is None

    @property
    def steps_run(self) -> int:
        """The denoising steps a variant runs: image to image runs the last steps × strength."""
        return self.steps if self.strength is None else self.steps - start_step(self.steps, self.strength)


def styled(prompt: str, style: str | None) -> str:
    return f"{prompt}, {style} style" if style else prompt


ImageBody = ImageGeneration | ControlledGeneration | ImageEdit | ImageInpaint | ImageOutpaint | ImageUpscale


class ImagesWorkflow(Workflow[ImageJob]):
    kind = "image"
    job_type = ImageJob
    quota = "images"

    def __init__(self, services) -> None:
        super().__init__(services)
        reuse = services.args.reuse
        self.dedup = Dedup(services.prompt_index, services.handles.get("embedder"), services.args.dedup,
                           reuse.min_similarity if reuse.enabled else None)

    # In the ingress.

    async def plan(self, body: ImageBody, context: str = "", loras_field: str = "loras") -> ImageJob:
        """Dedup the prompt to its key and pick the wanted seeds (the key's first n variants unless a seed is
        given); raises for unknown assets or bad sizes.

        `context` is fixed text the prompt is rendered after (a soul's style, a selfie's landmark): it joins the
        dedup scope, so only `body.prompt`, what the user asked within it, is matched against other prompts; the
        adapters' files (their digests) and scales join it too, and `loras_field` names where they came from."""
        defaults = self.services.defaults_of(body.family)
        owner = body.user_id or ""
        found = await self.services.check_loras(body.family, body.loras, loras_field)
        adapters = sorted(zip(body.loras, found, strict=True), key=lambda pair: pair[0].id)
        fields: dict[str, Any] = dict(
            family=body.family, steps=body.steps or defaults.steps, owner=owner, output_format=body.output_format,
            quality=body.quality, loras=[lora for lora, _ in adapters],
            guidance=defaults.guidance if body.guidance is None else body.guidance)
        if isinstance(body, ImageEdit):
            source = await self.services.image_asset(body.image, "image", owner)
            width, height = await self.services.source_size(body.family, source.size)
            fields |= dict(operation="edit", prompt=body.prompt, source=body.image, width=body.width or width,
                           height=body.height or height)
            scope = ("image.edit", body.image, owner)
        elif isinstance(body, ImageUpscale):
            source = await self.services.image_asset(body.image, "image", owner)
            width, height = await self._upscaled_size(source.size, body.scale)
            fields |= dict(operation="upscale", prompt=body.prompt or UPSCALE_PROMPT, source=body.image, width=width,
                           height=height, strength=body.strength, negative_prompt=body.negative_prompt)
            scope = ("image.upscale", body.image, owner, f"{body.strength:g}", body.negative_prompt)
        else:
            sources = [await self.services.image_asset(control.image, f"controls.{index}.image", owner)
                       for index, control in enumerate(body.control_list)]
            if body.image:  # image to image: the source's size first
                sources.insert(0, await self.services.image_asset(body.image, "image", owner))
            # control-guided: the size of the first control's image
            width, height = await self.services.source_size(body.family, sources[0].size if sources else None)
            fields |= dict(operation="generate", prompt=styled(in_context(context, body.prompt), body.style),
                           controls=body.control_list, negative_prompt=body.negative_prompt,
                           width=body.width or width, height=body.height or height)
            scope = ("image.controlled", owner, *(c.model_dump_json() for c in body.control_list)) \
                if body.control_list else ("image.generate",)
            if body.image:  # the source's digest (its id) and strength
                strength = body.default_strength if body.strength is None else body.strength
                fields |= dict(source=body.image, strength=strength)
                scope += ("image.img2img", owner, body.image, f"{strength:g}")
            if isinstance(body, ImageOutpaint):  # and the canvas
                fields |= dict(operation="outpaint", canvas=await self._canvas(body, sources[0].size))
                fields |= dict(width=fields["canvas"][2], height=fields["canvas"][3])
                scope += ("image.outpaint", *fields["canvas"])
            elif isinstance(body, ImageInpaint):  # and the mask's digest
                await self._repaint_mask(body.image, body.mask, owner)
                fields |= dict(operation="inpaint", mask=body.mask)
                scope += ("image.inpaint", body.mask or "alpha")
            if body.true_cfg_scale is not None:
                if body.family != "flux":
                    raise InvalidRequest("true_cfg_scale", f"{body.family} always guides with its negative prompt: "
                                                           "flux only")
                fields["true_cfg_scale"] = body.true_cfg_scale
                scope += ("image.true_cfg", f"{body.true_cfg_scale:g}")
            if body.prompt_weighting:
                if body.family != "sdxl":
                    raise InvalidRequest("prompt_weighting", "(word:1.3) weights are read on sdxl only")
                fields["prompt_weighting"] = True
                scope += ("image.weighted",)
            scope += (body.style or "", body.negative_prompt) + ((context,) if context else ())
        scope += (body.family, fields["width"], fields["height"], fields["steps"], fields["guidance"],
                  *(f"{lora.id}@{lora.scale:g}#{info.digest or ''}" for lora, info in adapters))
        if (acceleration := getattr(body, "acceleration", "none")) != "none":  # cached pixels: another prompt
            fields["acceleration"] = acceleration
            scope += (f"acceleration:{acceleration}",)
        if fields["operation"] != "upscale":  # an upscale's tiles are of the family's size
            await self.services.check_size(body.family, fields["width"], fields["height"])
        resolution = await self.dedup.resolve(scope_of(*scope), body.prompt or fields["prompt"])
        if body.seed is None:
            seeds = [slot_seed(resolution.prompt_key, slot) for slot in range(body.n)]
        else:
            seeds = [(body.seed + i) % (MAX_SEED + 1) for i in range(body.n)]
        generation = fields["operation"] == "generate"  # an edit has no `reuse`: it never starts from a latent
        reuse = self._reuse_from(resolution, fields["steps"]) if generation and body.reuse else None
        job = ImageJob(prompt_key=resolution.prompt_key, match=resolution.match, seeds=seeds, reuse=reuse, **fields)
        job._resolution, job._slots = resolution, body.n if body.seed is None else 0
        return job

    def _reuse_from(self, resolution: Resolution, steps: int) -> ReuseFrom | None:
        """The neighbour dedup found and the step its similarity maps to (None: none, or no step to skip)."""
        near = resolution.neighbour
        fraction = self.services.args.reuse.fraction(near.similarity) if near else None
        if near is None or fraction is None or round(fraction * steps) < 1:
            return None
        return ReuseFrom(prompt_key=near.prompt_key, similarity=near.similarity, step=round(fraction * steps))

    async def cached(self, job: ImageJob) -> dict[str, Any] | None:
        """The finished result when every wanted variant exists already: no model call."""
        variants = await self.services.variants.variants_for_seeds(job.prompt_key, job.seeds)
        hit = all(variants)
        instruments = service_metrics()
        instruments.dedup.inc(1, {"match": job.match})
        instruments.cache.inc(1, {"result": "hit" if hit else "miss"})
        return await self.result(job, variants, cache_hit=True) if hit else None

    async def reserve(self, job: ImageJob) -> ImageJob:
        """The prompt's use is recorded in the index (a concurrent request may have indexed it first, under its own
        key: the job follows), and the variant slots the job renders are taken."""
        resolution = await self.dedup.commit(job._resolution)
        update: dict[str, Any] = dict(match=resolution.match, prompt_key=resolution.prompt_key)
        if job._slots:
            await self.services.variants.reserve_slots(resolution.prompt_key, job._slots)
            update["seeds"] = [slot_seed(resolution.prompt_key, slot) for slot in range(job._slots)]
        return job.model_copy(update=update)

    def flight(self, job: ImageJob) -> str:
        """The same key and seeds, in the same encoding, are one generation."""
        return scope_of(job.prompt_key, *job.seeds, job.output_format, job.quality or "")

    def own_answer(self, job: ImageJob) -> dict[str, Any]:
        """A paraphrase that joined the task of the prompt it matched says how it matched (the task's: "new")."""
        return {"match": job.match}

    # Rendering, in a task.

    async def run(self, ctx: TaskContext, job: ImageJob) -> dict[str, Any]:
        return await self.result(job, await self.render(ctx, job), cache_hit=False)

    async def render(self, ctx: TaskContext, job: ImageJob) -> list[Variant]:
        """Every wanted variant, rendering only those missing; one that another task is rendering (another encoding
        or count of the same prompt) is waited for, not rendered twice: one render per (prompt key, seed)."""
        pool = self.services.variants
        variants = await pool.variants_for_seeds(job.prompt_key, job.seeds)
        handed: dict[int, str] = {}  # seed → the task that let go of its render, whose kept steps it goes on from
        while missing := [seed for seed, variant in zip(job.seeds, variants, strict=True) if variant is None]:
            mine = [seed for seed in missing
                    if await pool.claim_render(job.prompt_key, seed, ctx.task_id) == ctx.task_id]
            try:
                if mine:
                    await self._render_missing(ctx, job, mine, handed)
                else:
                    handed |= await self._rendered_elsewhere(ctx, job, missing)
            finally:
                for seed in mine:
                    await pool.release_render(job.prompt_key, seed, ctx.task_id)
            variants = await pool.variants_for_seeds(job.prompt_key, job.seeds)
        return variants

    async def _render_missing(self, ctx: TaskContext, job: ImageJob, seeds: list[int], handed: dict[int, str]) -> None:
        """Renders and adds the variants of `seeds` (concurrently, so the deployment batches them)."""
        await ctx.stage("preparing")
        controls, control_refs, source, mask = await self.inputs(job)
        await ctx.wait_for(job.family, len(seeds) * work_units(job.width, job.height, job.steps_run))
        rendered = await asyncio.gather(*(self._render_one(ctx, job, seed, controls, source, mask, index == 0,
                                                           handed.get(seed)) for index, seed in enumerate(seeds)))
        if job.operation == "generate":  # its kept latents: near-duplicates of this prompt start from them
            await self.services.library.add(job.family, job.prompt_key, ctx.task_id, seeds[0])
        for seed, (result, reused) in zip(seeds, rendered, strict=True):
            await ctx.spend(job.family, result.metadata)
            asset = await self.stored(job, result, job.shared, control_refs, reused or None)
            metadata = result.metadata.model_dump() | {"control_maps": control_refs} | reused
            await self.services.variants.add_variant(job.prompt_key, seed, asset.id, metadata)

    async def _rendered_elsewhere(self, ctx: TaskContext, job: ImageJob, seeds: list[int]) -> dict[int, str]:
        """Waits while other tasks render every one of `seeds`: until one of those variants is added or this task
        claims one (its holder let go; a holder that ended without adding it loses its claim here); the holder of
        the seed it claimed, if it saw one. Meanwhile the task shows a holder's render as its own wait."""
        pool = self.services.variants
        holders: dict[int, str] = {}
        shown = None
        while True:
            await ctx.check_cancelled("waiting")
            if any(await pool.variants_for_seeds(job.prompt_key, seeds)):
                return {}
            for seed in seeds:
                holder = await pool.claim_render(job.prompt_key, seed, ctx.task_id)
                if holder == ctx.task_id:
                    return {seed: holders[seed]} if seed in holders else {}
                holders[seed] = holder
                if await self.services.tasks.status(holder) in (None, *TERMINAL):
                    await pool.release_render(job.prompt_key, seed, holder)
            if holders[seeds[0]] != shown:
                shown = holders[seeds[0]]
                await ctx.wait_on(shown)
            await asyncio.sleep(RENDER_POLL_S)

    async def stored(self, job: ImageJob, result, shared: bool, control_refs: list[dict[str, Any]] | None = None,
                     started_from: dict[str, Any] | None = None):
        """A rendered image's asset, signed with its recipe (an edit's source as its ingredient); its model time
        recorded for the family's estimates."""
        await self.services.timings.record(job.family, result.metadata,
                                           work_units(result.width, result.height, job.steps_run))
        recipe = await self.recipe(job, result.seed, result.metadata.model_dump(), control_refs or [], started_from)
        source = None
        if job.source:
            info = await self.services.asset(job.source, "image", job.owner)
            source = await self.services.assets.bytes_of(job.source), info.content_type
        return await self.services.put_generated(result.png, "image/png", recipe, job.owner,
                                                 (result.width, result.height), shared, source)

    async def recipe(self, job: ImageJob, seed: int, metadata: dict[str, Any], control_refs: list[dict[str, Any]],
                     started_from: dict[str, Any] | None = None) -> Recipe:
        """How the variant of `seed` was made (the adapters with their files' digests)."""
        catalogue = await self.services.adapters.catalogue(job.family) if job.loras else {}
        return Recipe.of(
            metadata, operation=job.operation, family=job.family, seed=seed, steps=job.steps, width=job.width,
            height=job.height, guidance=job.guidance, prompt=job.prompt, negative_prompt=job.negative_prompt,
            prompt_key=job.prompt_key, source=job.source, strength=job.strength, mask=job.mask, canvas=job.canvas,
            true_cfg_scale=job.true_cfg_scale, prompt_weighting=job.prompt_weighting, format="png",
            watermark=self.services.watermark, acceleration=job.acceleration,
            started_from=started_from,
            loras=[RecipeAdapter(id=lora.id, scale=lora.scale, digest=getattr(catalogue.get(lora.id), "digest", None))
                   for lora in job.loras],
            controls=[RecipeControl(type=ref["type"], image=ref["asset_id"], scale=spec.scale)
                      for spec, ref in zip(job.controls, control_refs, strict=True)])

    async def _render_one(self, ctx: TaskContext, job: ImageJob, seed: int, controls: list[Control],
                          source: bytes | None, mask: bytes | None, first: bool, handed_from: str | None = None):
        """A variant's result, and its `reused` metadata when it started from a neighbour's latent (the first
        variant only: the others would start from the same latent); a render taken over from `handed_from` goes on
        from that task's last kept step."""
        request = self.request_for(job, seed, controls, source, mask)
        reused = {}
        if handed_from:
            await self._take_over(ctx, request, handed_from)
        elif first and job.reuse:
            reused = await self._reuse(ctx, job, request)
        return await self.call(job, request, ctx.task_id), reused

    async def _take_over(self, ctx: TaskContext, request: ImageRequest | EditRequest | UpscaleRequest,
                         holder: str) -> None:
        """Starts the job from the last step state that `holder` (a task that let go of this variant mid-render)
        kept of it: the job goes on where that task stopped, not from noise."""
        kept = self.services.kept
        if steps := (await kept.steps(holder)).get(request.seed):
            if state := await kept.state(holder, request.seed, steps[-1]):
                await kept.start(ctx.task_id, job_digest(request), state)

    async def _reuse(self, ctx: TaskContext, job: ImageJob, request: ImageRequest) -> dict[str, Any]:
        """Starts the job from its neighbour's kept latent at its planned step, or the library's latest before it."""
        assert job.reuse is not None
        found = await self.services.library.take(job.family, job.reuse.prompt_key, job.reuse.step)
        if found is None:
            return {}
        step, state = found
        await self.services.kept.start(ctx.task_id, job_digest(request), state)
        service_metrics().reuse.inc(1, {"family": job.family, "step": str(step)})
        return {"reused": {"from_prompt_key": job.reuse.prompt_key, "from_step": step, "steps_skipped": step}}

    def request_for(self, job: ImageJob, seed: int, controls: list[Control], source: bytes | None,
                    mask: bytes | None = None, watermark: bool | None = None
                    ) -> ImageRequest | EditRequest | UpscaleRequest:
        """The model request of one variant of the job, watermarked as the credentials say unless `watermark` says
        otherwise (a replay of a recipe)."""
        common = dict(prompt=job.prompt, width=job.width, height=job.height, steps=job.steps, guidance=job.guidance,
                      seed=seed, loras=tuple(job.loras), acceleration=job.acceleration,
                      watermark=self.services.watermark if watermark is None else watermark)
        if job.operation == "edit":
            return EditRequest(image=source, **common)
        if job.operation == "upscale":
            common.pop("acceleration")
            return UpscaleRequest(image=source, negative_prompt=job.negative_prompt, strength=job.strength, **common)
        return ImageRequest(negative_prompt=job.negative_prompt, controls=tuple(controls), image=source,
                            strength=1.0 if job.strength is None else job.strength, mask=mask,
                            true_cfg_scale=job.true_cfg_scale, prompt_weighting=job.prompt_weighting, **common)

    async def call(self, job: ImageJob, request: ImageRequest | EditRequest | UpscaleRequest, task_id: str | None):
        """One model request on the job's family, on a replica holding its adapters (Serve's multiplexing)."""
        handle = self.handle(job.family)
        if job.loras:
            handle = handle.options(multiplexed_model_id=adapter_key(tuple(job.loras)))
        if isinstance(request, EditRequest):
            return await handle.edit.remote(request, task_id)
        if isinstance(request, UpscaleRequest):
            return await handle.upscale.remote(request, task_id)
        return await handle.generate.remote(request, task_id)

    async def inputs(self, job: ImageJob) -> tuple[list[Control], list[dict[str, Any]], bytes | None, bytes | None]:
        """The job's control maps (and their asset refs), its source image and its repaint mask (an outpainting's:
        the extended canvas and the mask of its margins)."""
        controls, control_refs = await self._controls(job)
        source = await self.services.asset_bytes(job.source, "image", job.owner) if job.source else None
        mask = await self._repaint_mask(job.source, job.mask, job.owner) if job.operation == "inpaint" else None
        if job.canvas is not None:
            source, mask = await asyncio.to_thread(outpaint_canvas, source, *job.canvas)
        return controls, control_refs, source, mask

    async def _upscaled_size(self, size: tuple[int | None, int | None], scale: int) -> tuple[int, int]:
        """An upscale's output size: the image's × `scale` on SDXL's grid; `InvalidRequest` naming `image` for an
        image already past the largest upscale, `scale` for one that ×2 would still fit."""
        if not all(size):
            raise InvalidRequest("image", "an image of unknown size cannot be upscaled")
        grid = math.lcm((await self.services.info("sdxl"))["size_multiple"], 8)
        width, height = (-(-side * scale // grid) * grid for side in size)
        if max(width, height) > MAX_UPSCALED_SIDE:
            field = "scale" if scale > 2 and max(size) * 2 <= MAX_UPSCALED_SIDE else "image"
            raise InvalidRequest(field, f"{size[0]}x{size[1]} × {scale} exceeds {MAX_UPSCALED_SIDE} a side")
        return width, height

    async def _canvas(self, body: ImageOutpaint, size: tuple[int | None, int | None]) -> tuple[int, int, int, int]:
        """An outpainting's (left, top, width, height) on the family's grid; `InvalidRequest` naming the geometry's
        field for a canvas past the family's size or one that adds nothing."""
        if not all(size):
            raise InvalidRequest("image", "an image of unknown size cannot be extended")
        grid = math.lcm((await self.services.info(body.family))["size_multiple"], 8)
        aspect = tuple(map(int, body.aspect.split(":"))) if body.aspect else None
        margins = (body.left, body.right, body.top, body.bottom)
        canvas = outpaint_geometry(size, margins, aspect, grid)
        field = "aspect" if aspect else ("left", "right", "top", "bottom")[max(range(4), key=lambda i: margins[i])]
        if canvas[2:] == size:
            raise InvalidRequest(field, "nothing to paint: the image already has this size and aspect")
        limit = self.services.defaults_of(body.family).max_pixels or MAX_SIDE ** 2
        if max(canvas[2:]) > MAX_SIDE or canvas[2] * canvas[3] > limit:
            raise InvalidRequest(field, f"the canvas {canvas[2]}x{canvas[3]} exceeds what {body.family} serves "
                                        f"({MAX_SIDE} a side, {limit} pixels)")
        return canvas

    async def _repaint_mask(self, image: str, mask: str | None, owner: str) -> bytes:
        """The repaint mask of an inpainting as the model takes it (`mask_png`); `InvalidRequest` naming `mask` for
        one of another size than the image or with nothing to repaint."""
        source = await self.services.asset_bytes(image, "image", owner)
        drawn = None
        if mask is not None:
            await self.services.image_asset(mask, "mask", owner)
            drawn = await self.services.asset_bytes(mask, "mask", owner)
        return await asyncio.to_thread(lambda: mask_png(repaint_mask(source, drawn)))

    async def _controls(self, job: ImageJob) -> tuple[list[Control], list[dict[str, Any]]]:
        """Control maps computed from the source images at the output size, each also kept as an asset."""
        controls, refs = [], []
        for index, spec in enumerate(job.controls):
            field = f"controls.{index}.image"
            source = await self.services.asset_bytes(spec.image, field, job.owner)
            png = await asyncio.to_thread(_control_png, spec.type, source, job.width, job.height, field)
            asset = await self.services.assets.put(png, "image/png", "control", job.owner, (job.width, job.height))
            controls.append(Control(type=spec.type, image=png, scale=spec.scale))
            refs.append({"type": spec.type, **AssetRef.of(asset.id).model_dump()})
        return controls, refs

    async def result(self, job: ImageJob, variants: list[Variant], cache_hit: bool) -> dict[str, Any]:
        images = [ImageOut(**AssetRef.of(await self.encoded(job, v, cache_hit)).model_dump(), format=job.output_format,
                           seed=v.seed, variant_id=v.id, metadata=v.metadata) for v in variants]
        control_maps = [ControlMapOut(**ref) for ref in variants[0].metadata.get("control_maps", [])]
        return ImagesResult(images=images, prompt_key=job.prompt_key, cache_hit=cache_hit, match=job.match,
                            prompt_used=job.prompt, control_maps=control_maps).model_dump()

    async def encoded(self, job: ImageJob, variant: Variant, cache_hit: bool = False) -> str:
        """The variant's image in the job's format: its own PNG, or that PNG re-encoded (the same pixels, never a
        second model call) once per format and quality and found by them after; a rendition is signed as derived
        from the PNG (its recipe says whether it was made for a request served from cache)."""
        if job.output_format == "png":
            return variant.asset_id
        assets = self.services.assets
        quality = job.quality or DEFAULT_QUALITY
        if found := await assets.rendition(variant.asset_id, f"{job.output_format}:{quality}", job.owner, job.shared):
            return found
        png = await assets.bytes_of(variant.asset_id)
        data = await asyncio.to_thread(encode_image, png, job.output_format, job.quality)
        found = await assets.recipe(variant.asset_id)
        if found is None:  # a variant made before content credentials: re-encoded as it was
            return (await assets.put_rendition(variant.asset_id, f"{job.output_format}:{quality}", data,
                                               MEDIA_TYPES[job.output_format], job.owner, (job.width, job.height),
                                               job.shared)).id
        recipe = Recipe.model_validate_json(found).rendition(variant.asset_id, job.output_format, quality, cache_hit)
        return (await self.services.put_generated(data, MEDIA_TYPES[job.output_format], recipe, job.owner,
                                                  (job.width, job.height), job.shared, (png, "image/png"),
                                                  rendition_of=variant.asset_id)).id


def in_context(context: str, prompt: str) -> str:
    """A prompt as rendered after its fixed context (a soul's style, a selfie's landmark)."""
    return f"{context}, {prompt}" if context else prompt


def _control_png(kind: str, source: bytes, width: int, height: int, field: str) -> bytes:
    image = decode_rgb(source, field).resize((width, height))
    return encode_png(control_map(kind, image))
