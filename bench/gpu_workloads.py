"""The GPU suite's workloads: for each, a plain diffusers/transformers baseline and the Montage model class path,
both running the same request on the same architecture.

The baseline is the family's own pipeline class over freshly built components (default diffusers options), called
directly. The Montage path is the family class with the production runtime options of config/serve/h200.yaml (VAE
slicing/tiling, text-encoder offload, ...), its `source` replaced: validation, per-request generators, output
encoding (PNG/MP4) and metadata included.
"""
from __future__ import annotations

import importlib.util

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from config.families import Source
from models.steps import Steps

StepCallback = Callable[[int, int], None]
"""Called as on_step(done, total) after every denoising step."""

H200 = Path("config/serve/h200.yaml")
LLM_PROMPT = "a lighthouse on a cliff at dusk, waves below"


def png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def production_args(family: str, source: Source, device: str, dtype: str) -> dict[str, Any]:
    """A family's args from the H200 serve config, on `source`, `device` and `dtype`."""
    args = yaml.safe_load(H200.read_text())["applications"][0]["args"][family]["args"]
    return {**args, "source": source.value, "device": device, "dtype": dtype}


@dataclass(frozen=True)
class Workload:
    """One benchmark request for both paths. `full`/`tiny` are the request fields at each scale.

    `estimate_s` is the predicted wall time of the whole workload on one H200 (both paths: process start, builds,
    warm-up, the short calls): its measured time there (BENCHMARKS.md, 2026-11-27) rounded up by a quarter; the
    suite skips what would not fit its budget. `timed_steps` are the steps timed after the warm-up one (full size).
    A workload without a baseline measures a Montage option (`args`), e.g. compilation (warm-up included).
    """

    name: str
    family: str
    goal: str
    full: dict[str, Any]
    tiny: dict[str, Any]
    baseline: Callable[[Source, torch.device, torch.dtype], Any] | None
    call_baseline: Callable[[Any, dict, StepCallback], Any] | None
    montage: Callable[[dict[str, Any], dict[str, Any]], Any]
    call_montage: Callable[[Any, dict, StepCallback], Any]
    estimate_s: float
    encode: Callable[[Any, dict], bytes | None] | None = None
    timed_steps: int = 3
    args: dict[str, Any] = field(default_factory=dict)

    def fields(self, source: Source) -> dict[str, Any]:
        return self.tiny if source is Source.TINY else self.full

    @property
    def tokens(self) -> bool:
        """Decode workloads count tokens, not denoising steps."""
        return self.family == "llm"


def _encode_png(output: Any, f: dict) -> bytes:
    """PNG of the first image: a Montage call's images, or a diffusers pipeline output's `images`."""
    from models.media import encode_png

    return encode_png(getattr(output, "images", output)[0])


def _encode_mp4(output: Any, f: dict) -> bytes | None:
    """MP4 of the first clip (a Montage call's videos, or a pipeline output's `frames`); None where imageio-ffmpeg
    is not installed (a bare GPU box)."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        return None
    from models.media import frames_to_mp4

    return frames_to_mp4(getattr(output, "frames", output)[0], f["fps"])


def _callback(on_step: StepCallback, fields: dict) -> Any:
    """A baseline pipeline's `callback_on_step_end` reporting `on_step(done, total)`."""
    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
        on_step(step + 1, fields["steps"])
        return {}

    return callback


def _steps(on_step: StepCallback | Steps) -> Steps:
    """The Montage path's step hook reporting `on_step(done, total)`, or `on_step` itself when it is already one
    (bench/gpu_steps.py: checkpoints, previews, resume)."""
    if isinstance(on_step, Steps):
        return on_step
    return Steps(on_step=lambda boundary: on_step(boundary.done, boundary.total))


def _generator(device: torch.device) -> torch.Generator:
    return torch.Generator(device).manual_seed(0)


def _device(pipe: Any) -> torch.device:
    return pipe._execution_device


def _quiet(pipe: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    return pipe


# SDXL and SDXL + Union ControlNet.

def _sdxl_baseline(union: bool) -> Callable[[Source, torch.device, torch.dtype], Any]:
    def build(source: Source, device: torch.device, dtype: torch.dtype) -> Any:
        from diffusers import StableDiffusionXLControlNetUnionPipeline, StableDiffusionXLPipeline

        from models.sdxl import random_components

        components = random_components(source, device, dtype)
        if union:
            return _quiet(StableDiffusionXLControlNetUnionPipeline(**components))
        del components["controlnet"]
        return _quiet(StableDiffusionXLPipeline(**components))

    return build


def _sdxl_call(pipe: Any, f: dict, on_step: StepCallback) -> Any:
    control = dict(control_image=[Image.open(io.BytesIO(png(f["width"], f["height"])))], control_mode=[3]) \
        if f.get("control") else {}
    return pipe(prompt=f["prompt"], width=f["width"], height=f["height"], num_inference_steps=f["steps"],
                guidance_scale=f["guidance"], generator=_generator(_device(pipe)),
                callback_on_step_end=_callback(on_step, f), **control)


def _sdxl_montage(args: dict[str, Any], f: dict) -> Any:
    from config.families import SDXLArgs
    from models.sdxl import SDXL

    return SDXL(SDXLArgs.model_validate(args))


def _image_request(f: dict) -> Any:
    """A text-to-image request, control-guided with `control`, image to image with `img2img`, an inpainting of the
    centre square with `inpaint`. Strength 1: the timing harness counts every step of the call (at strength s a call
    runs s × steps of them: its e2e is before + s × steps × per step + after)."""
    from models.images import mask_png
    from models.types import Control, ImageRequest

    controls = (Control(type="canny", image=png(f["width"], f["height"])),) if f.get("control") else ()
    sourced: dict[str, Any] = {}
    if f.get("img2img") or f.get("inpaint"):
        sourced = dict(image=png(f["width"], f["height"]))
    if f.get("inpaint"):
        wanted = np.zeros((f["height"], f["width"]), bool)
        wanted[f["height"] // 4:3 * f["height"] // 4, f["width"] // 4:3 * f["width"] // 4] = True
        sourced["mask"] = mask_png(wanted)
    return ImageRequest(prompt=f["prompt"], width=f["width"], height=f["height"], steps=f["steps"],
                        guidance=f["guidance"], seed=0, controls=controls, **sourced, **accelerated(f))


def accelerated(f: dict) -> dict[str, Any]:
    """The request's `acceleration` (bench/speed.py's `cache` path: "step_cache"), where the fields name one."""
    return {"acceleration": f["acceleration"]} if f.get("acceleration") else {}


# FLUX and FLUX Kontext.

def _flux_baseline(kontext: bool) -> Callable[[Source, torch.device, torch.dtype], Any]:
    def build(source: Source, device: torch.device, dtype: torch.dtype) -> Any:
        from diffusers import FluxKontextPipeline, FluxPipeline

        from models.flux import random_components

        return _quiet((FluxKontextPipeline if kontext else FluxPipeline)(**random_components(source, device, dtype)))

    return build


def _flux_call(pipe: Any, f: dict, on_step: StepCallback) -> Any:
    edit = dict(image=Image.open(io.BytesIO(png(f["width"], f["height"]))), _auto_resize=False,
                max_area=f["width"] * f["height"]) if f.get("edit") else {}
    return pipe(prompt=f["prompt"], width=f["width"], height=f["height"], num_inference_steps=f["steps"],
                guidance_scale=f["guidance"], max_sequence_length=f["max_sequence_length"],
                generator=_generator(_device(pipe)), callback_on_step_end=_callback(on_step, f), **edit)


def _flux_montage(args: dict[str, Any], f: dict) -> Any:
    from config.families import FluxArgs
    from models.flux import Flux

    return Flux(FluxArgs.model_validate(args))


def _flux_montage_call(model: Any, f: dict, on_step: StepCallback) -> Any:
    if f.get("edit"):
        return model.run_edit([_edit_request(f)], _steps(on_step))
    return model.run([_image_request(f)], _steps(on_step))


def _edit_request(f: dict) -> Any:
    """A Kontext edit of a generated source image."""
    from models.types import EditRequest

    return EditRequest(prompt=f["prompt"], image=png(f["width"], f["height"]), width=f["width"], height=f["height"],
                       steps=f["steps"], guidance=f["guidance"], seed=0, **accelerated(f))


# SVD and Wan (image to video).

def _video_baseline(family: str) -> Callable[[Source, torch.device, torch.dtype], Any]:
    def build(source: Source, device: torch.device, dtype: torch.dtype) -> Any:
        if family == "svd":
            from diffusers import StableVideoDiffusionPipeline

            from models.svd import random_components

            return _quiet(StableVideoDiffusionPipeline(**random_components(source, device, dtype)))
        from diffusers import WanImageToVideoPipeline

        from models.wan import random_components

        return _quiet(WanImageToVideoPipeline(**random_components(source, device, dtype)))

    return build


def _svd_call(pipe: Any, f: dict, on_step: StepCallback) -> Any:
    return pipe(image=Image.open(io.BytesIO(png(f["width"], f["height"]))), width=f["width"], height=f["height"],
                num_frames=f["num_frames"], fps=f["fps"], num_inference_steps=f["steps"], min_guidance_scale=1.0,
                max_guidance_scale=f["guidance"], decode_chunk_size=8, generator=_generator(_device(pipe)),
                callback_on_step_end=_callback(on_step, f))


def _wan_call(pipe: Any, f: dict, on_step: StepCallback) -> Any:
    from models.wan import MAX_SEQUENCE_LENGTH

    return pipe(image=Image.open(io.BytesIO(png(f["width"], f["height"]))), prompt=f["prompt"], width=f["width"],
                height=f["height"], num_frames=f["num_frames"], num_inference_steps=f["steps"],
                guidance_scale=f["guidance"], max_sequence_length=MAX_SEQUENCE_LENGTH,
                generator=_generator(_device(pipe)), callback_on_step_end=_callback(on_step, f))


def _video_montage(family: str) -> Callable[[dict[str, Any], dict], Any]:
    def build(args: dict[str, Any], f: dict) -> Any:
        if family == "svd":
            from config.families import SVDArgs
            from models.svd import SVD

            return SVD(SVDArgs.model_validate(args))
        from config.families import WanArgs
        from models.wan import Wan

        return Wan(WanArgs.model_validate(args))

    return build


def _video_montage_call(model: Any, f: dict, on_step: StepCallback) -> Any:
    return model.run([_video_request(f)], _steps(on_step))


def _video_request(f: dict) -> Any:
    """An image-to-video request of a generated keyframe."""
    from models.types import VideoRequest

    return VideoRequest(image=png(f["width"], f["height"]), prompt=f["prompt"], width=f["width"], height=f["height"],
                        num_frames=f["num_frames"], fps=f["fps"], steps=f["steps"], guidance=f["guidance"], seed=0,
                        **accelerated(f))


# Qwen2.5 decode: "steps" are new tokens; min_new_tokens (generate) and a grammar refusing EOS (the engine) keep
# random weights from stopping early.

def _llm_baseline(source: Source, device: torch.device, dtype: torch.dtype) -> Any:
    from config.families import LLMArgs
    from models.llm import load

    return load(LLMArgs(source=source, device=str(device)), device, dtype)


def _llm_call(loaded: Any, f: dict, on_step: StepCallback) -> Any:
    model, tokenizer = loaded
    inputs = tokenizer(LLM_PROMPT, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        return model.generate(**inputs, max_new_tokens=f["steps"], min_new_tokens=f["steps"], do_sample=False,
                              pad_token_id=tokenizer.pad_token_id)


def _llm_montage(args: dict[str, Any], f: dict) -> Any:
    from config.families import LLMArgs
    from models.llm import LLM

    llm = LLM(LLMArgs.model_validate({**args, "context": 1024}))
    llm.warmup()  # the engine's step compiled (and CUDA-graphed) before the timed calls, as at replica start
    return llm


def _llm_montage_call(llm: Any, f: dict, on_step: StepCallback) -> Any:
    from bench.llm import fixed_ask

    return llm.submit(fixed_ask(f["steps"])).result()  # the decode engine, exactly `steps` tokens


_IMAGE = dict(prompt="a red vintage car on a rainy street", guidance=5.0)
_TINY_IMAGE = dict(_IMAGE, width=64, height=64, steps=2)
_FLUX = dict(_IMAGE, guidance=3.5, max_sequence_length=512)
_VIDEO = dict(prompt="the car drives away", fps=7)

def _sdxl_montage_call(model: Any, f: dict, on_step: StepCallback) -> Any:
    return model.run([_image_request(f)], _steps(on_step))


_SDXL = dict(_IMAGE, width=1024, height=1024, steps=30)
_FLUX_FULL = dict(_FLUX, width=1024, height=1024, steps=28)
_FLUX_TINY = dict(_FLUX, width=64, height=64, steps=2)
WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("llm", "llm", "≥ 300 tok/s", dict(steps=128), dict(steps=16), _llm_baseline, _llm_call, _llm_montage,
             _llm_montage_call, estimate_s=40),
    Workload("sdxl", "sdxl", "≤ 0.9 s", _SDXL, _TINY_IMAGE, _sdxl_baseline(False), _sdxl_call, _sdxl_montage,
             _sdxl_montage_call, estimate_s=25, encode=_encode_png),
    Workload("sdxl_union", "sdxl", "≤ 1.3 s", dict(_SDXL, control=True), dict(_TINY_IMAGE, control=True),
             _sdxl_baseline(True), _sdxl_call, _sdxl_montage, _sdxl_montage_call, estimate_s=25, encode=_encode_png),
    Workload("flux", "flux", "≤ 3.3 s", _FLUX_FULL, _FLUX_TINY, _flux_baseline(False), _flux_call, _flux_montage,
             _flux_montage_call, estimate_s=25, encode=_encode_png),
    Workload("flux_kontext", "flux", "≤ 7 s", dict(_FLUX_FULL, edit=True), dict(_FLUX_TINY, edit=True),
             _flux_baseline(True), _flux_call, _flux_montage, _flux_montage_call, estimate_s=30, encode=_encode_png),
    Workload("svd", "svd", "≤ 8 s", dict(_VIDEO, width=1024, height=576, num_frames=25, steps=25, guidance=3.0),
             dict(_VIDEO, width=64, height=64, num_frames=8, steps=2, guidance=3.0), _video_baseline("svd"),
             _svd_call, _video_montage("svd"), _video_montage_call, estimate_s=35, encode=_encode_mp4),
    Workload("wan", "wan", "≤ 190 s",
             dict(_VIDEO, fps=16, width=832, height=480, num_frames=81, steps=40, guidance=5.0),
             dict(_VIDEO, fps=16, width=64, height=64, num_frames=9, steps=2, guidance=5.0), _video_baseline("wan"),
             _wan_call, _video_montage("wan"), _video_montage_call, estimate_s=105, encode=_encode_mp4,
             timed_steps=2),
    # Image to image (the source's VAE encode and noised start) and inpainting (the kept area's blend after each step;
    # SDXL: the Union's repaint mode), Montage only.
    *(Workload(f"{family}_{tool}", family, goal, dict(full, **{tool: True}), dict(tiny, **{tool: True}), None, None,
               build, call, estimate_s=25, encode=_encode_png)
      for family, full, tiny, build, call in (("sdxl", _SDXL, _TINY_IMAGE, _sdxl_montage, _sdxl_montage_call),
                                              ("flux", _FLUX_FULL, _FLUX_TINY, _flux_montage, _flux_montage_call))
      for tool, goal in (("img2img", "≈ text to image per step"), ("inpaint", "≈ text to image per step"))),
    Workload("flux_compiled", "flux", "≤ 3.3 s", _FLUX_FULL, _FLUX_TINY, None, None, _flux_montage,
             _flux_montage_call, estimate_s=60, encode=_encode_png, args=dict(compile=True)),
    Workload("llm_compiled", "llm", "≥ 300 tok/s", dict(steps=128), dict(steps=16), None, None, _llm_montage,
             _llm_montage_call, estimate_s=60, args=dict(compile=True)),
    Workload("sdxl_compiled", "sdxl", "≤ 0.9 s", _SDXL, _TINY_IMAGE, None, None, _sdxl_montage, _sdxl_montage_call,
             estimate_s=45, encode=_encode_png, args=dict(compile=True)),
)}
