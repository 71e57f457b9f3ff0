"""Serialisable request and result types crossing deployment handles: prompts, sizes, seeds in; bytes out."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from config.acceleration import Acceleration
from config.families import MAX_LORAS
from config.ids import ADAPTER_ID
from models.errors import InvalidRequest
from models.formats import VideoFormat

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**63 - 1
MAX_SIDE = 2048  # the widest or tallest frame any request may ask
MAX_FRAMES = 129  # the most frames of one clip (Wan's 4·32 + 1)
ControlType = Literal["canny", "depth", "segmentation", "scribble", "tile"]
PromptMode = Literal["general", "artistic", "cinematic"]
PromptTarget = Literal["image", "video"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _non_blank(value: str, field: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{field} must not be empty")
    return value


def _checked_image(image: bytes, field: str) -> bytes:
    """An image's bytes, once they decode within the size limit (Pillow loads here, so that reading these shapes,
    as the client does, needs no imaging library)."""
    from models.images import inspect_image

    inspect_image(image, field)
    return image


def _multiple_of_8(value: int) -> int:
    if value % 8:
        raise ValueError(f"must be a multiple of 8, got {value}")
    return value


# A frame's width or height: its bounds are checked before its multiple, so 4097 is refused for its size.
Side = Annotated[int, Field(ge=8, le=MAX_SIDE, json_schema_extra={"multipleOf": 8}), AfterValidator(_multiple_of_8)]


class _Sized(_Request):
    """Shared size, steps and seed rules."""

    width: Side
    height: Side
    steps: int = Field(ge=1, le=100)
    guidance: float = Field(ge=0.0, le=30.0)
    seed: int = Field(ge=0, le=MAX_SEED)
    watermark: bool = Field(default=False, description="Montage's invisible watermark in the output's pixels")
    acceleration: Acceleration = Field(default="none", description="step_cache: the family's step cache skips "
                                                                   "steps that change little (other pixels)")


class Control(_Request):
    """One control map (already computed) for the Union ControlNet."""

    type: ControlType
    image: bytes = Field(repr=False)
    scale: float = Field(default=1.0, ge=0.0, le=2.0)

    @field_validator("image")
    @classmethod
    def _decodable(cls, value: bytes) -> bytes:
        return _checked_image(value, "controls.image")


class Lora(_Request):
    """One LoRA adapter of the family's catalogue and the strength it is applied at."""

    id: str = Field(max_length=64, json_schema_extra={"pattern": ADAPTER_ID})
    scale: float = Field(default=1.0, ge=-4.0, le=4.0, allow_inf_nan=False, strict=True)  # "0.5" is no number

    @field_validator("id")
    @classmethod
    def _adapter_id(cls, value: str) -> str:
        if not re.match(ADAPTER_ID, value):
            raise ValueError("an adapter id: lowercase letters, digits, '.', '_' or '-' (GET /v1/adapters lists them)")
        return value


def adapter_key(loras: tuple[Lora, ...]) -> str:
    """The adapter set a request needs loaded (Serve's multiplexed model id): its ids, sorted; scales do not count."""
    return "+".join(sorted(lora.id for lora in loras))


def check_distinct(loras: tuple[Lora, ...] | list[Lora], field: str = "loras") -> None:
    """`InvalidRequest` naming `field` when an adapter appears twice in one request."""
    if len({lora.id for lora in loras}) != len(loras):
        raise InvalidRequest(field, "each adapter may appear once")


class _Adapted(_Sized):
    """A denoising request that may carry LoRA adapters (each at most once)."""

    loras: tuple[Lora, ...] = Field(default=(), max_length=MAX_LORAS)

    @field_validator("loras")
    @classmethod
    def _distinct_loras(cls, value: tuple[Lora, ...]) -> tuple[Lora, ...]:
        check_distinct(value)
        return value


class AdapterInfo(BaseModel):
    """One adapter of a family's catalogue, as the replicas found it (`error`: why it cannot be used)."""

    id: str
    family: str
    source: Literal["file", "hub", "upload"]
    rank: int | None = None
    size_mb: float | None = None
    digest: str | None = Field(default=None, description="the file's content (SHA-256, 16 hex digits); None: hub")
    error: str | None = None
    blob: str | None = Field(default=None, description="an upload's bytes: their id in the asset store")


class AdapterHolding(BaseModel):
    """The adapters one replica holds loaded (least recently used first) and its counts since it started."""

    replica: str
    loaded: list[str]
    loads: int = 0
    hits: int = 0
    evictions: int = 0


class ImageRequest(_Adapted):
    """Text to image (SDXL or FLUX), optionally control-guided (SDXL), optionally with LoRA adapters; with a source
    `image`, image to image: the source noised by `strength` (0: the source, 1: text to image) and denoised; with a
    `mask` too (a PNG of the image's size, white = repaint: `models.images.repaint_mask`), inpainting: only the
    mask's area is repainted, the rest is the source's."""

    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    controls: tuple[Control, ...] = Field(default=(), max_length=4)
    image: bytes | None = Field(default=None, repr=False)
    strength: float = Field(default=1.0, ge=0.0, le=1.0)
    mask: bytes | None = Field(default=None, repr=False)
    true_cfg_scale: float = Field(default=1.0, ge=1.0, le=10.0, description="FLUX: over 1, true classifier-free "
                                  "guidance, which honours negative_prompt (the transformer runs twice a step)")
    prompt_weighting: bool = Field(default=False, description="SDXL: read `(word:1.3)` weights (compel)")

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return _non_blank(value, "prompt")

    @field_validator("image")
    @classmethod
    def _decodable(cls, value: bytes | None) -> bytes | None:
        return None if value is None else _checked_image(value, "image")

    @model_validator(mode="after")
    def _mask_of_the_image(self) -> ImageRequest:
        if self.mask is not None:
            if self.image is None:
                raise ValueError("mask: only with a source image (image)")
            from models.images import repaint_mask  # Pillow and numpy: see _checked_image

            repaint_mask(self.image, self.mask)
        return self

    @property
    def operation(self) -> str:
        return "generate" if self.image is None else "img2img" if self.mask is None else "inpaint"

    @field_validator("controls")
    @classmethod
    def _distinct_controls(cls, value: tuple[Control, ...]) -> tuple[Control, ...]:
        if len({control.type for control in value}) != len(value):
            raise ValueError("controls: each control type may appear once")
        return value


MAX_UPSCALED_SIDE = 4096  # an upscale's widest or tallest output
UPSCALE_PROMPT = "a sharp, detailed, high-resolution image"  # an upscale's tiles' prompt when none is given


class UpscaleRequest(_Request):
    """Upscaling by tiled image to image (`models/upscale.py`): the image resized to width × height (×2 or ×4 of its
    own), each tile re-denoised at `strength`."""

    image: Annotated[bytes, Field(repr=False), AfterValidator(lambda value: _checked_image(value, "image"))]
    width: int = Field(ge=8, le=MAX_UPSCALED_SIDE)
    height: int = Field(ge=8, le=MAX_UPSCALED_SIDE)
    prompt: str = Field(default=UPSCALE_PROMPT, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    steps: int = Field(ge=1, le=100)
    guidance: float = Field(ge=0.0, le=30.0)
    seed: int = Field(ge=0, le=MAX_SEED)
    strength: float = Field(default=0.35, ge=0.0, le=1.0)
    loras: tuple[Lora, ...] = Field(default=(), max_length=MAX_LORAS)
    watermark: bool = Field(default=False, description="Montage's invisible watermark in the output's pixels")


class EditRequest(_Adapted):
    """Instruction edit of an image (FLUX Kontext); width/height are the output size."""

    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    image: bytes = Field(repr=False)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return _non_blank(value, "prompt")

    @field_validator("image")
    @classmethod
    def _decodable(cls, value: bytes) -> bytes:
        return _checked_image(value, "image")


class VideoRequest(_Sized):
    """Image to video (SVD or Wan)."""

    image: bytes = Field(repr=False)
    prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    num_frames: int = Field(ge=2, le=MAX_FRAMES)
    fps: int = Field(ge=1, le=60)
    gif: bool = False
    output_format: VideoFormat = "mp4"

    @field_validator("image")
    @classmethod
    def _decodable(cls, value: bytes) -> bytes:
        return _checked_image(value, "image")


class _Sampling(_Request):
    """How an LLM answer is decoded: greedy at temperature 0, else sampled from the seed's own noise (the same seed
    gives the same text, whatever else decodes beside it)."""

    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0: greedy")
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


class PromptRequest(_Sampling):
    """Prompt optimisation."""

    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    mode: PromptMode = "general"
    target: PromptTarget = "image"

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return _non_blank(value, "prompt")


class StoryboardRequest(_Sampling):
    """A theme or a script to be cut into scenes."""

    theme: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    script: str | None = Field(default=None, max_length=20_000)
    num_scenes: int = Field(default=4, ge=1, le=12)
    style: str | None = Field(default=None, max_length=200)
    scene_seconds: float = Field(default=4.0, gt=0.0, le=30.0)

    @model_validator(mode="after")
    def _one_source(self) -> StoryboardRequest:
        given = [name for name in ("theme", "script") if (getattr(self, name) or "").strip()]
        if len(given) != 1:
            raise ValueError("theme: give exactly one of theme or script")
        return self


class Metadata(BaseModel):
    """How a result was produced; the deployment fills in the serving fields."""

    model_config = ConfigDict(protected_namespaces=())

    model: str
    source: str
    device: str
    batch_size: int = 1
    run_ms: float = 0.0
    replica: str | None = None
    queue_ms: float | None = None
    resumed_from_step: int | None = Field(default=None, description="the checkpointed step a retried job resumed from")
    fused_requests: int | None = Field(default=None, description="the most requests (its own included) whose "
                                                                 "denoiser calls of a step ran as one forward")
    gpu_seconds: float | None = Field(default=None, description="device seconds this request used: its share of "
                                                                "each denoiser forward (by batch rows) and its own "
                                                                "encoding, scheduler steps and decode")
    steps_skipped: int = Field(default=0, description="denoising steps the step cache served instead of the "
                                                      "denoiser (acceleration: step_cache)")
    extra: dict[str, Any] = Field(default_factory=dict)


class ImageResult(BaseModel):
    png: bytes = Field(repr=False)
    width: int
    height: int
    seed: int
    metadata: Metadata


class VideoResult(BaseModel):
    video: bytes = Field(repr=False)
    format: VideoFormat = "mp4"
    gif: bytes | None = Field(default=None, repr=False)
    num_frames: int
    fps: int
    width: int
    height: int
    seed: int
    metadata: Metadata


class OptimizedPrompt(BaseModel):
    prompt: str
    optimized: str
    mode: PromptMode
    target: PromptTarget
    fallback: bool = Field(description="True when the LLM output failed validation and a template was used")
    metadata: Metadata


ShotType = Literal["wide", "medium", "close-up", "extreme close-up", "over-the-shoulder", "aerial"]
CameraMove = Literal["static", "pan", "tilt", "dolly", "tracking", "crane", "handheld", "zoom"]


class Scene(BaseModel):
    """One storyboard scene, as validated from the LLM's JSON."""

    model_config = ConfigDict(extra="ignore")

    description: str = Field(min_length=3, max_length=600)
    shot_type: ShotType
    camera_move: CameraMove
    duration_s: float = Field(gt=0.0, le=30.0)
    visual_style: str = Field(min_length=2, max_length=200)


class Storyboard(BaseModel):
    scenes: list[Scene]
    fallback: bool
    metadata: Metadata


WATERMARK_BITS = 48  # the length of Montage's watermark message (models/watermark.py)


class Detection(BaseModel):
    """What the detector read from a frame: how many of the message's bits matched (None: too small to carry)."""

    found: bool
    bits_matched: int | None = None
    bits: int = WATERMARK_BITS


def start_step(total: int, strength: float) -> int:
    """The step an image-to-image job of `total` steps starts at: it runs the last `int(total × strength)` of them
    (diffusers' img2img rule); strength 1 runs them all, strength 0 none."""
    return total - min(int(total * strength), total)
