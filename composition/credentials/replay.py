"""Replay: an asset's recipe rendered again on this deployment, its pixels compared with the stored output's."""
from __future__ import annotations

import asyncio

import numpy as np
from composition.credentials.recipe import Recipe
from composition.schemas.provenance import ReplayOut
from composition.services import Services
from composition.workflows.images import ImageJob, ImagesWorkflow
from composition.workflows.videos import VideoJob, VideosWorkflow
from models.errors import InvalidRequest
from models.formats import MEDIA_TYPES
from models.media import decode_frames
from models.types import Control

async def replay(services: Services, images: ImagesWorkflow, videos: VideosWorkflow, asset_id: str,
                 user: str | None) -> ReplayOut:
    """Renders `asset_id`'s recipe again (a rendition's parent's) with no task, and compares the pixels."""
    recipe = await services.recipe(asset_id, "asset_id", user)
    if recipe.parent is not None:
        asset_id, recipe = recipe.parent, await services.recipe(recipe.parent, "asset_id", user)
    if recipe.operation == "storyboard":
        raise InvalidRequest("asset_id", "a storyboard's video is its clips joined: replay its clips (recipe.parts)")
    if recipe.operation == "animate":
        data = await _clip(services, videos, recipe, user)
    else:
        data = await _image(services, images, recipe, user)
    stored = await services.asset_bytes(asset_id, "asset_id", user)
    content_type = MEDIA_TYPES[recipe.format]
    before, after = await asyncio.gather(asyncio.to_thread(decode_frames, stored, content_type),
                                         asyncio.to_thread(decode_frames, data, content_type))
    same_shape = before.shape == after.shape
    difference = int(np.abs(before.astype(np.int16) - after.astype(np.int16)).max()) if same_shape else 255
    return ReplayOut(asset_id=asset_id, identical=same_shape and difference == 0, max_pixel_difference=difference,
                     frames=len(before), recipe=services.recipe_view(recipe))


async def _image(services: Services, images: ImagesWorkflow, recipe: Recipe, user: str | None) -> bytes:
    job = ImageJob(operation=recipe.operation, family=recipe.family, prompt=recipe.prompt,
                   negative_prompt=recipe.negative_prompt, width=recipe.width, height=recipe.height,
                   steps=recipe.steps, guidance=recipe.guidance, seeds=[recipe.seed],
                   prompt_key=recipe.prompt_key or "", match="exact", source=recipe.source, strength=recipe.strength,
                   mask=recipe.mask, canvas=recipe.canvas, true_cfg_scale=recipe.true_cfg_scale,
                   prompt_weighting=recipe.prompt_weighting, acceleration=recipe.acceleration,
                   loras=[{"id": lora.id, "scale": lora.scale} for lora in recipe.loras])
    controls = [Control(type=c.type, image=await services.asset_bytes(c.image, "asset_id", user), scale=c.scale)
                for c in recipe.controls]
    _, _, source, mask = await images.inputs(job.model_copy(update={"controls": [], "owner": user or ""}))
    request = images.request_for(job, recipe.seed, controls, source, mask, recipe.watermark)
    return (await images.call(job, request, None)).png


async def _clip(services: Services, videos: VideosWorkflow, recipe: Recipe, user: str | None) -> bytes:
    job = VideoJob(image=recipe.source or "", prompt=recipe.prompt, model=recipe.family,
                   num_frames=recipe.num_frames, fps=recipe.fps, steps=recipe.steps, seed=recipe.seed,
                   gif=False, width=recipe.width, height=recipe.height, output_format=recipe.format,
                   acceleration=recipe.acceleration)
    image = await services.asset_bytes(job.image, "asset_id", user)
    result = await videos.clip(None, job, image, recipe.watermark)
    return result.video
