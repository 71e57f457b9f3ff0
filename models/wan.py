"""Wan 2.1 image to video (I2V-14B-480P): one conditioning image per pipeline call."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
from PIL import Image
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

from config.families import Source, WanArgs
from models import tokenizers
from models.images import decode_rgb
from models.previews import Previewer
from models.family import VideoFamily
from models.loading import apply_runtime, build, generators
from models.steps import Steps, stepped_call
from models.types import VideoRequest

MAX_SEQUENCE_LENGTH = 512  # the I2V transformer splits image from text context assuming 512 text tokens

_TINY_TRANSFORMER = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
    text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    eps=1e-6, image_dim=4, added_kv_proj_dim=24, rope_max_seq_len=1024,
)
_FULL_TRANSFORMER = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120, rope_max_seq_len=1024,
)
_TINY_VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                 temperal_downsample=[False, True, True])
_FULL_VAE = dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 temperal_downsample=[False, True, True])
_TINY_TEXT = dict(vocab_size=1000, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
_FULL_TEXT = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                  feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                  relative_attention_max_distance=128, tie_word_embeddings=False)
_TINY_IMAGE = dict(image_size=32, patch_size=1, hidden_size=4, projection_dim=4, num_hidden_layers=2,
                   num_attention_heads=2, intermediate_size=16)
_FULL_IMAGE = dict(image_size=224, patch_size=14, hidden_size=1280, projection_dim=1024, num_hidden_layers=32,
                   num_attention_heads=16, intermediate_size=5120, hidden_act="gelu")
ARCHITECTURES = {
    Source.TINY: dict(transformer=_TINY_TRANSFORMER, vae=_TINY_VAE, text=_TINY_TEXT, image=_TINY_IMAGE,
                      image_size=32),
    Source.RANDOM: dict(transformer=_FULL_TRANSFORMER, vae=_FULL_VAE, text=_FULL_TEXT, image=_FULL_IMAGE,
                        image_size=224),
}


def scheduler() -> UniPCMultistepScheduler:
    """Wan 2.1's scheduler: UniPC on flow-matching sigmas, shift 3 (the 480P setting)."""
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def random_components(source: Source, device: torch.device, dtype: torch.dtype,
                      text_encoder_device: torch.device | None = None) -> dict[str, Any]:
    """Every Wan I2V component from a config, random weights (tiny or full size); the text encoder is built on
    `text_encoder_device` (default `device`), so an offloaded encoder never occupies the GPU."""
    arch = ARCHITECTURES[source]
    encoder_device = torch.device(text_encoder_device or device)
    return dict(
        transformer=build(lambda: WanTransformer3DModel(**arch["transformer"]), device, dtype),
        vae=build(lambda: AutoencoderKLWan(**arch["vae"]), device, dtype),
        text_encoder=build(lambda: UMT5EncoderModel(UMT5Config(**arch["text"])), encoder_device, dtype,
                           fast_init=source is Source.RANDOM and encoder_device.type == "cpu"),
        image_encoder=build(lambda: CLIPVisionModel(CLIPVisionConfig(**arch["image"])), device, dtype),
        image_processor=CLIPImageProcessor(crop_size=arch["image_size"], size=arch["image_size"]),
        tokenizer=tokenizers.t5(MAX_SEQUENCE_LENGTH),
        scheduler=scheduler(),
    )


def load_pipeline(args: WanArgs, device: torch.device, dtype: torch.dtype) -> WanImageToVideoPipeline:
    """The pipeline on `device`; with `text_encoder_offload` its UMT5 encoder is loaded or built on the CPU and
    stays there (moving it after a GPU build would leave its memory in the caching allocator)."""
    encoder_device = torch.device("cpu") if args.text_encoder_offload else device
    if args.source is not Source.PRETRAINED:
        return WanImageToVideoPipeline(**random_components(args.source, device, dtype, encoder_device))
    pipe = WanImageToVideoPipeline.from_pretrained(args.model_id, torch_dtype=dtype)
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            component.to(encoder_device if name == "text_encoder" else device)
    return pipe


class Wan(VideoFamily):
    """`animate(batch)`: each request's image and prompt become a `num_frames` clip."""

    name = "wan"

    def __init__(self, args: WanArgs) -> None:
        super().__init__(args)
        self.pipe = load_pipeline(args, self.device, self.dtype)
        apply_runtime(self.pipe, args, "transformer")
        if args.vae_tiling:
            self.pipe.vae.enable_tiling()
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()  # prompt → (1, 512, C), least recent first
        self._embedding = threading.Lock()  # a turn's fused groups look up and encode their prompts at once
        self.previewer = Previewer(self.decode_images, self.pipe.vae.config.z_dim, self.pipe.vae_scale_factor_spatial)

    def decode_images(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (N, C, h, w), each one frame, to images (N, 3, H, W) in [0, 1] (the previews')."""
        vae = self.pipe.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1)
        latents = (latents * std + mean).unsqueeze(2).to(self.device, vae.dtype)
        with torch.inference_mode():
            return (vae.decode(latents).sample[:, :, 0] / 2 + 0.5).clamp(0, 1)

    def previews(self, latents: torch.Tensor) -> list[bytes]:
        """Latents (B, C, F, h, w) to one strip per clip."""
        return self.previewer.clips(latents.transpose(1, 2))

    @property
    def denoisers(self) -> list[torch.nn.Module]:
        return [self.pipe.transformer]

    @property
    def size_multiple(self) -> int:
        """VAE downsampling times the transformer's spatial patch."""
        return self.pipe.vae_scale_factor_spatial * self.pipe.transformer.config.patch_size[1]

    @property
    def frame_multiple(self) -> int:
        """num_frames must be frame_multiple·k + 1 (the VAE's temporal compression)."""
        return self.pipe.vae_scale_factor_temporal

    @staticmethod
    def group_key(request: VideoRequest) -> tuple:
        """Requests with equal keys run in one pipeline call: the pipeline takes a single image."""
        image = hashlib.sha256(request.image).digest()
        return (image, request.width, request.height, request.steps, request.guidance, request.num_frames,
                request.acceleration)

    def run(self, requests: list[VideoRequest], steps: Steps | None = None) -> np.ndarray:
        """One pipeline call for compatible requests; returns float frames (B, F, H, W, 3) in [0, 1]."""
        first = self.one_group(requests)
        image = decode_rgb(first.image).resize((first.width, first.height), Image.Resampling.LANCZOS)
        pipe = self.gang.view(self.pipe, guided=first.guidance > 1) if self.gang else self.pipe
        pipe, stepping = stepped_call(pipe, steps, len(requests), first.steps, self.previews)
        with torch.inference_mode():
            return pipe(
                image=image, **self.prompts(requests), width=first.width, height=first.height,
                num_frames=first.num_frames, num_inference_steps=first.steps, guidance_scale=first.guidance,
                max_sequence_length=MAX_SEQUENCE_LENGTH,
                generator=generators([r.seed for r in requests], self.device),
                output_type="np",
                **stepping,
            ).frames

    def prompts(self, requests: list[VideoRequest]) -> dict[str, Any]:
        """Prompt arguments: embeddings by prompt text from the replica's cache (storyboard scenes and retries repeat
        their prompts), the negative prompt's ("", every request's) among them."""
        positive = self.embeddings([r.prompt for r in requests])
        if requests[0].guidance <= 1:
            return dict(prompt_embeds=positive)
        return dict(prompt_embeds=positive, negative_prompt_embeds=self.embeddings([""]).expand(len(requests), -1, -1))

    def embeddings(self, prompts: list[str]) -> torch.Tensor:
        """UMT5 embeddings (B, 512, C) on the denoiser's device: each prompt's from the cache (the `prompt_cache`
        most recently used), the missing ones encoded together."""
        with self._embedding:
            if missing := list(dict.fromkeys(p for p in prompts if p not in self._embeddings)):
                for prompt, embedding in zip(missing, self.encode(missing), strict=True):
                    self._embeddings[prompt] = embedding[None]
            for prompt in prompts:
                self._embeddings.move_to_end(prompt)
            embeds = self._embeddings[prompts[0]] if len(prompts) == 1 else \
                torch.cat([self._embeddings[p] for p in prompts])
            while len(self._embeddings) > self.args.prompt_cache:
                self._embeddings.popitem(last=False)
            return embeds

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """UMT5 embeddings (B, 512, C) on the encoder's own device (the CPU with `text_encoder_offload`), moved to
        the denoiser's device."""
        embeds, _ = self.pipe.encode_prompt(prompt=prompts, do_classifier_free_guidance=False,
                                            max_sequence_length=MAX_SEQUENCE_LENGTH,
                                            device=self.pipe.text_encoder.device, dtype=self.dtype)
        return embeds.to(self.device)
