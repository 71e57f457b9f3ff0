"""SDXL with the Union ControlNet: styled text-to-image and control-guided images."""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetUnionModel,
    EulerDiscreteScheduler,
    StableDiffusionXLControlNetUnionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from config.families import SDXLArgs, Source, is_checkpoint_file
from models import tokenizers
from models.adapters import adapter_bank
from models.errors import InvalidRequest
from models.graphs import graph_forward
from models.images import decode_rgb
from models.img2img import pasted, repaint_controls, sourced_steps
from models.results import image_result
from models.previews import Previewer
from models.family import Family, blank_png
from models.loading import apply_runtime, build, generators, single_file_config
from models.steps import Steps, stepped_call
from models.upscale import upscaled
from models.weighting import check_weighting, compel_syntax
from models.types import Control, ImageRequest, ImageResult, UpscaleRequest

CONTROL_MODES = {"depth": 1, "scribble": 2, "canny": 3, "segmentation": 5, "tile": 6}
REPAINT_MODE = 7  # the Union ControlNet (ProMax)'s inpaint and outpaint mode

_TINY_UNET = dict(
    block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
    addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
    cross_attention_dim=64, norm_num_groups=32,
)
_FULL_UNET = dict(
    block_out_channels=(320, 640, 1280), layers_per_block=2, sample_size=128, in_channels=4, out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(5, 10, 20), use_linear_projection=True, addition_embed_type="text_time",
    addition_time_embed_dim=256, transformer_layers_per_block=(1, 2, 10), projection_class_embeddings_input_dim=2816,
    cross_attention_dim=2048, norm_num_groups=32,
)
_UNET_ONLY = ("out_channels", "up_block_types", "sample_size")
_TINY_CONTROLNET = dict(
    {k: v for k, v in _TINY_UNET.items() if k not in _UNET_ONLY},
    conditioning_embedding_out_channels=(8, 16, 32, 32), num_control_type=8,
    num_trans_channel=32, num_trans_head=2, num_trans_layer=1, num_proj_channel=32,
)
_FULL_CONTROLNET = dict(
    {k: v for k, v in _FULL_UNET.items() if k not in _UNET_ONLY},
    conditioning_embedding_out_channels=(16, 32, 96, 256), num_control_type=8,
    num_trans_channel=320, num_trans_head=8, num_trans_layer=1, num_proj_channel=320,
)
# Four blocks, like the real VAE: latents are 1/8 of the image, so the UNet and the VAE's mid-block attention run on
# 32² cells at 256² (with two blocks, 128²: seconds per step on a CPU core); narrow, so its full-size blocks are
# cheap.
_TINY_VAE = dict(block_out_channels=[8, 16, 32, 32], in_channels=3, out_channels=3, latent_channels=4,
                 norm_num_groups=8, down_block_types=["DownEncoderBlock2D"] * 4,
                 up_block_types=["UpDecoderBlock2D"] * 4)
_FULL_VAE = dict(block_out_channels=[128, 256, 512, 512], in_channels=3, out_channels=3, latent_channels=4,
                 layers_per_block=2, sample_size=1024, scaling_factor=0.13025, force_upcast=False,
                 down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
_CLIP_IDS = dict(bos_token_id=0, eos_token_id=1, pad_token_id=2)
# Two widths summing to the UNet's cross_attention_dim, as in SDXL (768 + 1280): diffusers' single-file loader tells
# the encoders of one checkpoint apart by their width.
_TINY_TEXT = dict(hidden_size=24, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5,
                  vocab_size=1000, hidden_act="gelu", projection_dim=32, **_CLIP_IDS)
_TINY_TEXT_2 = dict(_TINY_TEXT, hidden_size=40)
_FULL_TEXT = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                  vocab_size=49408, hidden_act="quick_gelu", projection_dim=768, **_CLIP_IDS)
_FULL_TEXT_2 = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                    vocab_size=49408, hidden_act="gelu", projection_dim=1280, **_CLIP_IDS)
ARCHITECTURES = {
    Source.TINY: dict(unet=_TINY_UNET, controlnet=_TINY_CONTROLNET, vae=_TINY_VAE, text=_TINY_TEXT,
                      text_2=_TINY_TEXT_2),
    Source.RANDOM: dict(unet=_FULL_UNET, controlnet=_FULL_CONTROLNET, vae=_FULL_VAE, text=_FULL_TEXT,
                        text_2=_FULL_TEXT_2),
}


def scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                  beta_schedule="scaled_linear", timestep_spacing="leading")


def random_components(source: Source, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Every SDXL + Union component from a config, random weights (tiny or full size)."""
    arch = ARCHITECTURES[source]
    return dict(
        unet=build(lambda: UNet2DConditionModel(**arch["unet"]), device, dtype),
        controlnet=build(lambda: ControlNetUnionModel(**arch["controlnet"]), device, dtype),
        vae=build(lambda: AutoencoderKL(**arch["vae"]), device, dtype),
        text_encoder=build(lambda: CLIPTextModel(CLIPTextConfig(**arch["text"])), device, dtype),
        text_encoder_2=build(lambda: CLIPTextModelWithProjection(CLIPTextConfig(**arch["text_2"])), device, dtype),
        tokenizer=tokenizers.clip(),
        tokenizer_2=tokenizers.clip(),
        scheduler=scheduler(),
    )


def load_pipeline(args: SDXLArgs, device: torch.device, dtype: torch.dtype) -> StableDiffusionXLControlNetUnionPipeline:
    """Pretrained: a hub id or folder, or one SGM checkpoint file (UNet, VAE, both text encoders) with the configs and
    tokenizers of `config_folder`; the ControlNet from `controlnet_id` either way."""
    if args.source is Source.PRETRAINED:
        controlnet = ControlNetUnionModel.from_pretrained(args.controlnet_id, torch_dtype=dtype)
        if is_checkpoint_file(args.model_id):
            pipe = StableDiffusionXLControlNetUnionPipeline.from_single_file(
                args.model_id, config=single_file_config(args), controlnet=controlnet, torch_dtype=dtype,
                local_files_only=True)
        else:
            pipe = StableDiffusionXLControlNetUnionPipeline.from_pretrained(
                args.model_id, controlnet=controlnet, torch_dtype=dtype)
        return pipe.to(device)
    return StableDiffusionXLControlNetUnionPipeline(**random_components(args.source, device, dtype))


def _scaled(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    return latents * pipe.vae.config.scaling_factor


def _schedule(pipe: Any, steps: int, latents: torch.Tensor) -> Any:
    """A fresh scheduler of the pipeline's, set as its call sets it."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps, device=latents.device)
    return scheduler


class SDXL(Family):
    """`generate(batch)`: plain SDXL without controls, Union ControlNet with them."""

    name = "sdxl"
    operations = {"generate": ("run", image_result), "upscale": ("run_upscale", image_result)}

    def __init__(self, args: SDXLArgs) -> None:
        super().__init__(args)
        self.union = load_pipeline(args, self.device, self.dtype)
        # Its own scheduler: a scheduler holds one call's timesteps and step index (see models/flux.py). The dtype
        # is explicit: from_pipe casts the shared modules to float32 otherwise.
        self.plain = StableDiffusionXLPipeline.from_pipe(
            self.union, scheduler=type(self.union.scheduler).from_config(self.union.scheduler.config),
            torch_dtype=self.dtype)
        tokenizers.one_at_a_time(self.union, self.plain)  # a turn's fused groups encode their prompts at once
        # Loaded through the Union pipeline (the plain one shares its UNet and text encoders); before compiling.
        # Hot-swap slots (weights written in place) where the UNet compiles or replays CUDA graphs.
        self.adapters = adapter_bank(self.name, self.union, "unet", args.adapters, args.source,
                                     args.compile or args.cuda_graphs)
        apply_runtime(self.union, args, "unet")
        if args.cuda_graphs:
            self.use_graphs(args.buckets())
        self.plain.set_progress_bar_config(disable=True)
        if args.vae_slicing:
            self.union.vae.enable_slicing()
        vae = self.union.vae
        self.previewer = Previewer(self.decode, vae.config.latent_channels, self.union.vae_scale_factor)
        self.compel: Any = None  # prompt weighting's embedder, made at its first use

    def use_graphs(self, buckets: list[int]) -> None:
        """CUDA graphs of the UNet's and the ControlNet's forward at `buckets` (`models/graphs.py`); the plain
        pipeline shares both modules."""
        for module in (self.union.unet, self.union.controlnet):
            graph_forward(module, buckets)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents in the UNet's space to images (N, 3, H, W) in [0, 1] (the previews' calibration)."""
        vae = self.union.vae
        with torch.inference_mode():
            images = vae.decode(latents.to(self.device, vae.dtype) / vae.config.scaling_factor).sample
        return (images / 2 + 0.5).clamp(0, 1)

    @property
    def size_multiple(self) -> int:
        """Pixels per latent cell at the UNet's coarsest level (full size: 8 × 4 = 32)."""
        return self.union.vae_scale_factor * 2 ** (len(self.union.unet.config.block_out_channels) - 1)

    def warmup_requests(self) -> list[tuple[Callable[[list], Any], ImageRequest]]:
        """Plain and ControlNet calls feed the UNet different inputs, so both compile."""
        d = self.defaults
        plain = ImageRequest(prompt="warm-up", width=d.width, height=d.height, steps=2, guidance=d.guidance, seed=0)
        control = Control(type="canny", image=blank_png(d.width, d.height))
        return [(self.run, plain), (self.run, plain.model_copy(update={"controls": (control,)}))]

    @staticmethod
    def group_key(request: ImageRequest | UpscaleRequest) -> tuple:
        """Requests with equal keys run in one pipeline call (an upscale alone, or with its equals)."""
        if isinstance(request, UpscaleRequest):
            return ("upscale", request)
        controls = tuple(sorted((c.type, c.scale) for c in request.controls))
        return (request.width, request.height, request.steps, request.guidance, controls, request.loras,
                request.operation, request.strength, request.prompt_weighting)

    def validate(self, request: ImageRequest | UpscaleRequest) -> None:
        super().validate(request)
        if isinstance(request, ImageRequest) and request.true_cfg_scale > 1:
            raise InvalidRequest("true_cfg_scale", "sdxl always guides with its negative prompt: flux only")
        if isinstance(request, ImageRequest) and request.prompt_weighting:
            check_weighting(request.prompt, "prompt")
            check_weighting(request.negative_prompt, "negative_prompt")

    @staticmethod
    def fuse_key(request: ImageRequest | UpscaleRequest) -> Hashable | None:
        """An inpainting runs the Union ControlNet, an upscale tiles of several sizes: they fuse with nothing."""
        return Family.fuse_key(request) if isinstance(request, ImageRequest) and request.mask is None else None

    def run(self, requests: list[ImageRequest], steps: Steps | None = None) -> np.ndarray:
        """One pipeline call for compatible requests; returns float images (B, H, W, 3) in [0, 1]."""
        first = self.one_group(requests)
        with self.adapters.applied(first.loras, steps) as steps:
            return self._call(requests, first, steps)

    def _call(self, requests: list[ImageRequest], first: ImageRequest, steps: Steps | None) -> np.ndarray:
        pipe = self.union if first.controls or first.mask is not None else self.plain
        steps = sourced_steps(pipe, requests, steps, _scaled, lambda _pipe, noise: noise, _schedule)
        pipe, stepping = stepped_call(pipe, steps, len(requests), first.steps, self.previewer.images)
        kwargs: dict[str, Any] = dict(
            **self._prompts(requests, first),
            width=first.width, height=first.height,
            num_inference_steps=first.steps, guidance_scale=first.guidance,
            generator=generators([r.seed for r in requests], self.device),
            output_type="np",
            **stepping,
        )
        if first.controls or first.mask is not None:
            types = sorted(c.type for c in first.controls)
            by_type = [{c.type: c for c in r.controls} for r in requests]
            kwargs.update(
                control_image=[[decode_rgb(m[t].image, "controls.image") for m in by_type] for t in types],
                control_mode=[CONTROL_MODES[t] for t in types],
                controlnet_conditioning_scale=[by_type[0][t].scale for t in types],
            )
            if first.mask is not None:  # the Union ControlNet's inpaint mode sees the source around the hole
                kwargs["control_image"].append(repaint_controls(requests))
                kwargs["control_mode"].append(REPAINT_MODE)
                kwargs["controlnet_conditioning_scale"].append(1.0)
        with torch.inference_mode():
            return pasted(requests, pipe(**kwargs).images)

    def _prompts(self, requests: list[ImageRequest], first: ImageRequest) -> dict[str, Any]:
        """The prompts as the pipeline takes them: as text, or with `prompt_weighting` as compel's embeddings of
        their `(word:1.3)` weights (both text encoders, as SDXL conditions)."""
        prompts, negatives = [r.prompt for r in requests], [r.negative_prompt for r in requests]
        if not first.prompt_weighting:
            return dict(prompt=prompts, negative_prompt=negatives)
        if self.compel is None:
            from compel import CompelForSDXL

            self.compel = CompelForSDXL(self.plain, device=self.device)
            self.compel.disable_no_weights_bypass()  # one path for every prompt: "(fox:1.0)" is "fox"
        with torch.inference_mode():
            embedded = self.compel([compel_syntax(p) for p in prompts],
                                   negative_prompt=[compel_syntax(n) for n in negatives])
        return dict(prompt_embeds=embedded.embeds, pooled_prompt_embeds=embedded.pooled_embeds,
                    negative_prompt_embeds=embedded.negative_embeds,
                    negative_pooled_prompt_embeds=embedded.negative_pooled_embeds)

    def generate(self, requests: list[ImageRequest], steps: Steps | None = None) -> list[ImageResult]:
        """Mixed batches are split into compatible groups; results keep the request order."""
        return self.batch("generate", requests, steps)

    def upscale(self, requests: list[UpscaleRequest], steps: Steps | None = None) -> list[ImageResult]:
        return self.batch("upscale", requests, steps)

    def run_upscale(self, requests: list[UpscaleRequest], steps: Steps | None = None) -> list[np.ndarray]:
        """Each upscale of one group by tiles of the default size (`models/upscale.py`), one after another."""
        return [upscaled(request, self.defaults.width, self.run, steps) for request in requests]

    def group_metadata(self, group: list[ImageRequest | UpscaleRequest]) -> dict[str, Any]:
        if isinstance(group[0], UpscaleRequest):
            return dict(strength=group[0].strength)
        return dict(controls=[c.type for c in group[0].controls], loras=[lora.model_dump() for lora in group[0].loras])
