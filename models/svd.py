"""Stable Video Diffusion (SVD-XT): image to video, a different conditioning image per request."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from PIL import Image
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from config.families import Source, SVDArgs
from models.graphs import graph_forward
from models.images import decode_rgb
from models.previews import Previewer
from models.family import VideoFamily
from models.loading import apply_runtime, build, generators
from models.steps import Steps, stepped_call
from models.types import VideoRequest

_TINY_UNET = dict(
    block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8, out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    cross_attention_dim=32, num_attention_heads=8, projection_class_embeddings_input_dim=96,
    addition_time_embed_dim=32,
)
_FULL_UNET = dict(
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, sample_size=96, in_channels=8, out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    cross_attention_dim=1024, num_attention_heads=(5, 10, 20, 20), projection_class_embeddings_input_dim=768,
    addition_time_embed_dim=256, transformer_layers_per_block=1, num_frames=25,
)
# Four blocks, like the real VAE: latents are 1/8 of the frame, which keeps the tiny UNet fast on CPU.
_TINY_VAE = dict(block_out_channels=[32] * 4, in_channels=3, out_channels=3, latent_channels=4,
                 down_block_types=["DownEncoderBlock2D"] * 4)
_FULL_VAE = dict(block_out_channels=[128, 256, 512, 512], in_channels=3, out_channels=3, latent_channels=4,
                 layers_per_block=2, sample_size=768, scaling_factor=0.18215, force_upcast=True,
                 down_block_types=["DownEncoderBlock2D"] * 4)
_TINY_IMAGE = dict(image_size=224, patch_size=32, hidden_size=32, projection_dim=32, num_hidden_layers=5,
                   num_attention_heads=4, intermediate_size=37)
_FULL_IMAGE = dict(image_size=224, patch_size=14, hidden_size=1280, projection_dim=1024, num_hidden_layers=32,
                   num_attention_heads=16, intermediate_size=5120, hidden_act="gelu")
ARCHITECTURES = {
    Source.TINY: dict(unet=_TINY_UNET, vae=_TINY_VAE, image=_TINY_IMAGE),
    Source.RANDOM: dict(unet=_FULL_UNET, vae=_FULL_VAE, image=_FULL_IMAGE),
}


def scheduler() -> EulerDiscreteScheduler:
    """SVD-XT's scheduler: continuous-time v-prediction on Karras sigmas."""
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", prediction_type="v_prediction", use_karras_sigmas=True,
        timestep_type="continuous", sigma_max=700.0, sigma_min=0.002,
    )


def random_components(source: Source, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Every SVD component from a config, random weights (tiny or full size)."""
    arch = ARCHITECTURES[source]
    return dict(
        unet=build(lambda: UNetSpatioTemporalConditionModel(**arch["unet"]), device, dtype),
        vae=build(lambda: AutoencoderKLTemporalDecoder(**arch["vae"]), device, dtype),
        image_encoder=build(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**arch["image"])), device, dtype),
        feature_extractor=CLIPImageProcessor(),
        scheduler=scheduler(),
    )


def load_pipeline(args: SVDArgs, device: torch.device, dtype: torch.dtype) -> StableVideoDiffusionPipeline:
    if args.source is Source.PRETRAINED:
        return StableVideoDiffusionPipeline.from_pretrained(args.model_id, torch_dtype=dtype).to(device)
    return StableVideoDiffusionPipeline(**random_components(args.source, device, dtype))


class SVD(VideoFamily):
    """`animate(batch)`: each request's image becomes a `num_frames` clip at `fps`."""

    name = "svd"

    def __init__(self, args: SVDArgs) -> None:
        super().__init__(args)
        self.pipe = load_pipeline(args, self.device, self.dtype)
        apply_runtime(self.pipe, args, "unet")
        if args.cuda_graphs:
            self.use_graphs(args.buckets())
        self.previewer = Previewer(self.decode_images, self.pipe.vae.config.latent_channels, self.pipe.vae_scale_factor)

    def use_graphs(self, buckets: list[int]) -> None:
        """CUDA graphs of the UNet's forward at `buckets` (`models/graphs.py`)."""
        graph_forward(self.pipe.unet, buckets)

    def decode_images(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (N, C, h, w) as N frames of one clip to images (N, 3, H, W) in [0, 1] (the previews')."""
        vae = self.pipe.vae
        latents = latents.to(self.device, vae.dtype) / vae.config.scaling_factor
        with torch.inference_mode():
            return (vae.decode(latents, num_frames=len(latents)).sample / 2 + 0.5).clamp(0, 1)

    @property
    def size_multiple(self) -> int:
        """VAE downsampling times the UNet's own (one halving per block but the last)."""
        return self.pipe.vae_scale_factor * 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)

    @staticmethod
    def group_key(request: VideoRequest) -> tuple:
        """Requests with equal keys run in one pipeline call (images may differ)."""
        return request.width, request.height, request.steps, request.guidance, request.num_frames, request.fps

    def run(self, requests: list[VideoRequest], steps: Steps | None = None) -> np.ndarray:
        """One pipeline call for compatible requests; returns float frames (B, F, H, W, 3) in [0, 1]."""
        first = self.one_group(requests)
        size = (first.width, first.height)
        images = [decode_rgb(r.image).resize(size, Image.Resampling.LANCZOS) for r in requests]
        pipe, stepping = stepped_call(self.pipe, steps, len(requests), first.steps, self.previewer.clips)
        with torch.inference_mode():
            latents = pipe(
                image=images, width=first.width, height=first.height,
                num_frames=first.num_frames, fps=first.fps, num_inference_steps=first.steps,
                min_guidance_scale=1.0, max_guidance_scale=first.guidance,
                generator=generators([r.seed for r in requests], self.device),
                output_type="latent",
                **stepping,
            ).frames
            return np.concatenate([self.decode(clip[None]) for clip in latents])

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents (1, F, C, h, w) of one clip to frames (1, F, H, W, 3), `decode_chunk_size` frames at a time.

        The pipeline's own decode chunks the whole batch as one run of frames, so the temporal decoder would mix
        neighbouring clips; decoding clip by clip keeps every request independent of its batch-mates.
        """
        frames = self.pipe.decode_latents(latents, latents.shape[1], self.args.decode_chunk_size)
        return self.pipe.video_processor.postprocess_video(frames, output_type="np")
