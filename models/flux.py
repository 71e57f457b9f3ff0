"""FLUX.1 text-to-image and FLUX.1 Kontext image editing, sharing text encoders and VAE."""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxKontextPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
)
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from config.families import FluxArgs, Source, is_checkpoint_file
from models import tokenizers
from models.adapters import adapter_bank
from models.errors import InvalidRequest
from models.images import decode_rgb
from models.img2img import pasted, sourced_steps
from models.results import image_result
from models.previews import Previewer
from models.family import Family, blank_png
from models.loading import apply_runtime, build, generators, single_file_config
from models.steps import Steps, stepped_call
from models.types import EditRequest, ImageRequest, ImageResult

_TINY_TRANSFORMER = dict(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                         num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                         axes_dims_rope=[4, 4, 8])
_FULL_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                         num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                         guidance_embeds=True, axes_dims_rope=[16, 56, 56])
# Four blocks, like the real VAE: latents are 1/8 of the image, so 256² is 16² tokens (with one block, 128²: the
# transformer's and the VAE's attention over 16384 tokens took seconds on a CPU core).
_TINY_VAE = dict(sample_size=32, block_out_channels=(4, 4, 4, 4), layers_per_block=1, latent_channels=1,
                 norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                 scaling_factor=1.5035, down_block_types=["DownEncoderBlock2D"] * 4,
                 up_block_types=["UpDecoderBlock2D"] * 4)
_FULL_VAE = dict(sample_size=1024, block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=16,
                 use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611,
                 down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
_CLIP_IDS = dict(bos_token_id=0, eos_token_id=1, pad_token_id=2)
_TINY_CLIP = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5,
                  vocab_size=1000, hidden_act="gelu", projection_dim=32, **_CLIP_IDS)
_FULL_CLIP = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                  vocab_size=49408, hidden_act="quick_gelu", projection_dim=768, **_CLIP_IDS)
_TINY_T5 = dict(vocab_size=1000, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
_FULL_T5 = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)
ARCHITECTURES = {
    Source.TINY: dict(transformer=_TINY_TRANSFORMER, vae=_TINY_VAE, clip=_TINY_CLIP, t5=_TINY_T5),
    Source.RANDOM: dict(transformer=_FULL_TRANSFORMER, vae=_FULL_VAE, clip=_FULL_CLIP, t5=_FULL_T5),
}


def random_components(source: Source, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Every FLUX component from a config, random weights (tiny or full size)."""
    arch = ARCHITECTURES[source]
    return dict(
        transformer=build(lambda: FluxTransformer2DModel(**arch["transformer"]), device, dtype),
        vae=build(lambda: AutoencoderKL(**arch["vae"]), device, dtype),
        text_encoder=build(lambda: CLIPTextModel(CLIPTextConfig(**arch["clip"])), device, dtype),
        text_encoder_2=build(lambda: T5EncoderModel(T5Config(**arch["t5"])), device, dtype),
        tokenizer=tokenizers.clip(),
        tokenizer_2=tokenizers.t5(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


def load_transformer(args: FluxArgs, location: str, dtype: torch.dtype) -> FluxTransformer2DModel:
    """A transformer from a hub id or folder (its `transformer` subfolder), or from one .safetensors file (BFL's
    layout, or diffusers') configured by `config_folder`."""
    if is_checkpoint_file(location):
        return FluxTransformer2DModel.from_single_file(location, config=single_file_config(args),
                                                       subfolder="transformer", torch_dtype=dtype,
                                                       local_files_only=True)
    return FluxTransformer2DModel.from_pretrained(location, subfolder="transformer", torch_dtype=dtype)


def load_pipelines(args: FluxArgs, device: torch.device,
                   dtype: torch.dtype) -> tuple[FluxPipeline, FluxKontextPipeline]:
    """Text-to-image and Kontext pipelines over one set of encoders and VAE. A .safetensors `model_id` is the
    transformer alone (as FLUX.1's released files are); the other components then load from `config_folder`."""
    if args.source is Source.PRETRAINED:
        if is_checkpoint_file(args.model_id):
            text_to_image = FluxPipeline.from_pretrained(
                single_file_config(args), transformer=load_transformer(args, args.model_id, dtype), torch_dtype=dtype)
        else:
            text_to_image = FluxPipeline.from_pretrained(args.model_id, torch_dtype=dtype)
        text_to_image.to(device)
    else:
        text_to_image = FluxPipeline(**random_components(args.source, device, dtype))
    # Modules are shared; the scheduler is not: it holds one call's timesteps and step index, and the deployment runs
    # text-to-image and edit batches in two threads.
    scheduler = text_to_image.scheduler
    components = dict(text_to_image.components, scheduler=type(scheduler).from_config(scheduler.config))
    if args.kontext_id:
        components["transformer"] = load_transformer(args, args.kontext_id, dtype).to(device)
    return text_to_image, FluxKontextPipeline(**components)


def _packed(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents as the transformer's tokens of 2 × 2 cells."""
    batch, channels, height, width = latents.shape
    return pipe._pack_latents(latents, batch, channels, height, width)


def _normalised(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    """The VAE's latents in the transformer's space, packed."""
    config = pipe.vae.config
    return _packed(pipe, (latents - config.shift_factor) * config.scaling_factor)


def _schedule(pipe: FluxPipeline, steps: int, latents: torch.Tensor) -> Any:
    """A fresh scheduler of the pipeline's, set as `FluxPipeline.__call__` sets it (its sigmas shifted by the
    sequence length)."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    config = scheduler.config
    mu = calculate_shift(latents.shape[1], config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                         config.get("base_shift", 0.5), config.get("max_shift", 1.15))
    retrieve_timesteps(scheduler, steps, latents.device, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return scheduler


class Flux(Family):
    """`generate(batch)` for text-to-image, `edit(batch)` for Kontext instruction edits."""

    name = "flux"
    operations = {"generate": ("run", image_result), "edit": ("run_edit", image_result)}

    def __init__(self, args: FluxArgs) -> None:
        super().__init__(args)
        self.text_to_image, self.kontext = load_pipelines(args, self.device, self.dtype)
        tokenizers.one_at_a_time(self.text_to_image, self.kontext)  # their calls run in two threads
        # Kontext shares the text-to-image pipeline's modules, unless it has its own transformer; before compiling.
        extra = (self.kontext.transformer,) if args.kontext_id else ()
        self.adapters = adapter_bank(self.name, self.text_to_image, "transformer", args.adapters, args.source,
                                     args.compile, extra)
        apply_runtime(self.text_to_image, args, "transformer")
        if args.kontext_id:
            apply_runtime(self.kontext, args, "transformer")
        self.kontext.set_progress_bar_config(disable=True)
        vae = self.text_to_image.vae
        self.previewer = Previewer(self.decode, vae.config.latent_channels, self.text_to_image.vae_scale_factor)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unpacked latents (N, C, h, w) in the transformer's space to images (N, 3, H, W) in [0, 1]."""
        vae = self.text_to_image.vae
        latents = latents.to(self.device, vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
        with torch.inference_mode():
            return (vae.decode(latents).sample / 2 + 0.5).clamp(0, 1)

    @property
    def size_multiple(self) -> int:
        return self.text_to_image.vae_scale_factor * 2

    @property
    def denoisers(self) -> list[torch.nn.Module]:
        return [self.text_to_image.transformer, self.kontext.transformer]

    def validate(self, request: ImageRequest | EditRequest) -> None:
        super().validate(request)
        if isinstance(request, ImageRequest) and request.controls:
            raise InvalidRequest("controls", "flux takes no control images, use model 'sdxl'")
        if isinstance(request, ImageRequest) and request.prompt_weighting:
            raise InvalidRequest("prompt_weighting", "(word:1.3) weights are read on sdxl only")

    def warmup_requests(self) -> list[tuple[Callable[[list], Any], ImageRequest | EditRequest]]:
        """An edit carries its source image's tokens too: another sequence length, another graph."""
        d = self.defaults
        size = dict(width=d.width, height=d.height, steps=2, guidance=d.guidance, seed=0)
        return [(self.run, ImageRequest(prompt="warm-up", **size)),
                (self.run_edit, EditRequest(prompt="warm-up", image=blank_png(d.width, d.height), **size))]

    @staticmethod
    def group_key(request: ImageRequest | EditRequest) -> tuple:
        return (request.width, request.height, request.steps, request.guidance, request.loras,
                getattr(request, "operation", "edit"), getattr(request, "strength", None),
                getattr(request, "true_cfg_scale", None), request.acceleration)

    @staticmethod
    def fuse_key(request: ImageRequest | EditRequest) -> Hashable | None:
        """True classifier-free guidance calls the transformer twice a step: it fuses with nothing."""
        return None if getattr(request, "true_cfg_scale", 1.0) > 1 else Family.fuse_key(request)

    def _call(self, pipe: Any, requests: list, steps: Steps | None, **kwargs: Any) -> np.ndarray:
        first = self.one_group(requests)

        def previews(packed: torch.Tensor) -> list[bytes]:
            return self.previewer.images(pipe._unpack_latents(packed, first.height, first.width, pipe.vae_scale_factor))

        with self.adapters.applied(first.loras, steps) as steps:  # loads outside inference mode: peft sets grads
            if pipe is self.text_to_image:
                steps = sourced_steps(pipe, requests, steps, _normalised, _packed, _schedule)
            view, stepping = stepped_call(self.gang.view(pipe, guided=False) if self.gang else pipe, steps,
                                          len(requests), first.steps, previews)
            with torch.inference_mode():
                return pasted(requests, view(
                    prompt=[r.prompt for r in requests],
                    width=first.width, height=first.height,
                    num_inference_steps=first.steps, guidance_scale=first.guidance,
                    generator=generators([r.seed for r in requests], self.device),
                    max_sequence_length=self.args.max_sequence_length,
                    output_type="np",
                    **stepping,
                    **kwargs,
                ).images)

    def run(self, requests: list[ImageRequest], steps: Steps | None = None) -> np.ndarray:
        """Text to image for one compatible group: float images (B, H, W, 3) in [0, 1]; with `true_cfg_scale` over
        1 the negative prompts count (true classifier-free guidance)."""
        true_cfg = requests[0].true_cfg_scale
        negative = dict(negative_prompt=[r.negative_prompt for r in requests], true_cfg_scale=true_cfg) \
            if true_cfg > 1 else {}
        return self._call(self.text_to_image, requests, steps, **negative)

    def run_edit(self, requests: list[EditRequest], steps: Steps | None = None) -> np.ndarray:
        """Kontext edit for one compatible group; each source image is resized to the output size."""
        size = (requests[0].width, requests[0].height)
        images = [decode_rgb(r.image).resize(size) for r in requests]
        return self._call(self.kontext, requests, steps, image=images, _auto_resize=False,
                          max_area=size[0] * size[1])

    def generate(self, requests: list[ImageRequest], steps: Steps | None = None) -> list[ImageResult]:
        return self.batch("generate", requests, steps)

    def edit(self, requests: list[EditRequest], steps: Steps | None = None) -> list[ImageResult]:
        return self.batch("edit", requests, steps)

    def group_metadata(self, group: list[ImageRequest | EditRequest]) -> dict[str, Any]:
        return dict(loras=[lora.model_dump() for lora in group[0].loras])
