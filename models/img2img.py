"""Image to image and inpainting on a text-to-image pipeline: the call resumes from the sources' latents noised to
the step their strength starts at (`models.steps.noised_start`), and an inpainting's latents keep the source outside
its mask after every step (`Steps.keep`), so checkpoints, previews, resume and fusion work as for any job.

diffusers' img2img and inpaint pipelines do the same arithmetic, but take given latents as their noise, so a job
resumed from a checkpoint could not run in them; the text-to-image pipelines resume any step."""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from models.images import decode_rgb, repaint_mask
from models.loading import generators
from models.steps import Steps, noised, noised_start
from models.types import ImageRequest, start_step

# (pipeline, the VAE's latents of the sources) -> the sources as the pipeline's denoiser takes them (scaled, packed)
Encode = Callable[[Any, torch.Tensor], torch.Tensor]
# (pipeline, a tensor shaped like the VAE's latents) -> as the pipeline's denoiser takes it (FLUX packs it)
Layout = Callable[[Any, torch.Tensor], torch.Tensor]
# (pipeline, steps, latents) -> a fresh scheduler of the pipeline's, set for `steps` as the pipeline sets it
Schedule = Callable[[Any, int, torch.Tensor], Any]


def sourced_steps(pipe: Any, requests: list[ImageRequest], steps: Steps | None, encode: Encode, layout: Layout,
                  schedule: Schedule) -> Steps | None:
    """The call's `Steps` for one compatible group: unchanged without a source image; with one, they begin at the
    strength's step (`begin`: progress counts the steps run), resume from the noised sources unless they already
    resume a checkpoint of the job, and, with a mask, keep the source outside it. The noise is each seed's
    text-to-image noise, so strength 1 without a mask is text to image."""
    first = requests[0]
    if first.image is None:
        return steps
    steps = steps or Steps()
    begin = start_step(first.steps, first.strength)
    device = pipe._execution_device
    pixels = pipe.image_processor.preprocess([_source(r) for r in requests])
    with torch.inference_mode():
        latents = pipe.vae.encode(pixels.to(device, pipe.vae.dtype)).latent_dist.mode()
        noise = randn_tensor(latents.shape, generator=generators([r.seed for r in requests], device), device=device,
                             dtype=pipe.dtype)
        sources, noise = encode(pipe, latents).to(pipe.dtype), layout(pipe, noise)
    update: dict[str, Any] = dict(begin=begin)
    if first.mask is not None:  # every latent cell the mask touches is repainted
        cells = F.max_pool2d(_masks(requests).to(device), pipe.vae_scale_factor).expand_as(latents).contiguous()
        update["keep"] = functools.partial(_kept, sources, noise, layout(pipe, cells.to(pipe.dtype)))
    if not steps.resume:
        update["resume"] = noised_start(schedule(pipe, first.steps, noise), sources, noise, begin, first.steps)
    return dataclasses.replace(steps, **update)


def _kept(sources: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor, scheduler: Any,
          latents: torch.Tensor) -> torch.Tensor:
    """After a step: the mask's area as denoised, the rest the sources noised to the next step (diffusers' inpaint
    pipelines' blend)."""
    return mask * latents + (1 - mask) * noised(scheduler, sources, noise)


def pasted(requests: list[ImageRequest], images: np.ndarray) -> np.ndarray:
    """Inpaintings' float images (B, H, W, 3) with the source's own pixels outside each mask: the VAE's round trip
    changes none of them; other images unchanged."""
    if getattr(requests[0], "mask", None) is None:  # Kontext's edits have none
        return images
    sources = np.stack([np.asarray(_source(r), np.float32) / 255.0 for r in requests])
    masks = _masks(requests).permute(0, 2, 3, 1).numpy()
    return np.where(masks > 0, images, sources)


def repaint_controls(requests: list[ImageRequest]) -> list[Image.Image]:
    """The Union ControlNet's repaint control images: each source with its mask's area black."""
    masks = _masks(requests)[:, 0].numpy() > 0
    return [Image.fromarray(np.where(mask[..., None], 0, np.asarray(_source(r))).astype(np.uint8))
            for r, mask in zip(requests, masks, strict=True)]


def _source(request: ImageRequest) -> Any:
    return decode_rgb(request.image).resize((request.width, request.height))


def _masks(requests: list[ImageRequest]) -> torch.Tensor:
    """(B, 1, H, W) floats at the output size: 1 where a request repaints."""
    masks = []
    for r in requests:
        wanted = repaint_mask(r.image, r.mask)
        resized = F.interpolate(torch.from_numpy(wanted)[None, None].float(), size=(r.height, r.width))
        masks.append(resized[0])
    return torch.stack(masks)
