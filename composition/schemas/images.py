"""Images: text to image, control-guided, and instruction edits."""
from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from composition.schemas.common import (AccelerationOption, AssetId, AssetRef, Body, Id, ImageModel, Match, Prompt,
                                        Seed, TaskBody, check_acceleration, wait_field)
from config.families import MAX_LORAS
from models.formats import ImageFormat
from models.types import MAX_SIDE, UPSCALE_PROMPT, ControlType, Lora, Side
from models.weighting import check_weighting

STRENGTH = 0.8  # image to image's default: the last 80 % of the steps
Loras = Annotated[list[Lora], BeforeValidator(lambda value: [] if value is None else value),
                  Field(max_length=MAX_LORAS, description="LoRA adapters of the family (GET /v1/adapters) and their "
                                                          "scales; a changed scale is another image; null: none")]


class _Encoding(TaskBody):
    """How the images are encoded: a format is a rendering of the same variants (same pixels), not a new generation."""

    output_format: ImageFormat = Field(default="png", description="png, jpeg or webp")
    quality: int | None = Field(default=None, ge=1, le=100, description="jpeg and webp only (default 90)")

    @model_validator(mode="after")
    def _lossy_only(self) -> _Encoding:
        if self.quality is not None and self.output_format == "png":
            raise ValueError("quality: only for jpeg and webp (png is lossless)")
        return self


class _ImageOptions(_Encoding):
    default_strength: ClassVar[float] = STRENGTH  # with a source image

    negative_prompt: str = Field(default="", max_length=2000)
    width: Side | None = None
    height: Side | None = None
    steps: int | None = Field(default=None, ge=1, le=100)
    guidance: float | None = Field(default=None, ge=0.0, le=30.0)
    seed: Seed | None = Field(default=None, description="None: the prompt key's own variant seeds (cacheable)")
    style: str | None = Field(default=None, max_length=200)
    loras: Loras = []
    n: int = Field(default=1, ge=1, le=8)
    reuse: bool = Field(default=True, description="a new prompt may start from a similar prompt's kept latent "
                                                  "(metadata.reused); false: always from noise")
    user_id: Id | None = None
    project_id: Id | None = None
    wait_s: float = wait_field(60)
    image: AssetId | None = Field(default=None, description="a source image: image to image (its size is the "
                                                            "default size)")
    strength: float | None = Field(default=None, ge=0.0, le=1.0,
                                   description="with image: how much of it is repainted, 0 (the source) to 1 (text to "
                                               f"image); the steps run are steps × strength; default {STRENGTH} (inpainting: 1)")

    prompt_weighting: bool = Field(default=False, description="SDXL only: read `(word:1.3)` weights in the prompts "
                                                              "(compel)")
    true_cfg_scale: float | None = Field(default=None, ge=1.0, le=10.0,
                                         description="FLUX only: over 1, true classifier-free guidance at this scale, "
                                                     "which honours negative_prompt (each step costs 2×)")
    acceleration: AccelerationOption = "none"

    @model_validator(mode="after")
    def _strength_of_a_source(self) -> _ImageOptions:
        if self.strength is not None and self.image is None:
            raise ValueError("strength: only with a source image (image)")
        check_acceleration(self.acceleration, self.family)
        return self


class ImageGeneration(_ImageOptions):
    prompt: Prompt
    model: ImageModel = "sdxl"

    @model_validator(mode="after")
    def _weights_readable(self) -> ImageGeneration:
        if self.prompt_weighting:
            check_weighting(self.prompt, "prompt")
            check_weighting(self.negative_prompt, "negative_prompt")
        return self

    @property
    def family(self) -> str:
        return self.model

    @property
    def control_list(self) -> list[ControlSpec]:
        return []


class ImageInpaint(ImageGeneration):
    """Masked inpainting: the mask's white area (or the image's fully transparent pixels) repainted as the prompt
    says, every other pixel the image's own."""

    default_strength: ClassVar[float] = 1.0

    image: AssetId = Field(description="the image to repaint; its size is the default size")
    mask: AssetId | None = Field(default=None, description="a PNG of the image's size, white = repaint; none: the "
                                                           "image's fully transparent pixels")


Margin = Annotated[int, Field(ge=0, le=MAX_SIDE, description="pixels added on that side")]


class ImageOutpaint(ImageGeneration):
    """Outpainting: the image on a larger canvas (its margins, or `aspect`), the new area painted as the prompt says,
    the image's own pixels kept. The canvas is rounded up to the family's grid (the extra on the right and bottom)."""

    default_strength: ClassVar[float] = 1.0

    image: AssetId = Field(description="the image to extend")
    left: Margin = 0
    right: Margin = 0
    top: Margin = 0
    bottom: Margin = 0
    aspect: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,3}:[1-9][0-9]{0,3}$",
                               description='"W:H": the canvas widened or heightened (evenly on both sides) to it, '
                                           "instead of margins")

    @model_validator(mode="after")
    def _one_geometry(self) -> ImageOutpaint:
        margins = (self.left, self.right, self.top, self.bottom)
        if self.width is not None or self.height is not None:
            raise ValueError("width: an outpainting's size is the image's plus its margins (or aspect)")
        if self.aspect is not None and any(margins):
            raise ValueError("aspect: give either aspect or margins (left, right, top, bottom)")
        if self.aspect is None and not any(margins):
            raise ValueError("left: give a margin (left, right, top, bottom) or an aspect")
        return self


class ImageUpscale(_Encoding):
    """Upscaling ×2 or ×4 by tiled image to image on SDXL (`models/upscale.py`)."""

    family: ClassVar[str] = "sdxl"

    image: AssetId = Field(description="the image to enlarge")
    scale: int = Field(default=2, json_schema_extra={"enum": [2, 4]}, description="2 or 4")  # not Literal: 2.0 == 2
    prompt: str | None = Field(default=None, max_length=2000, description="what the tiles show (default: "
                                                                          f"{UPSCALE_PROMPT!r})")
    negative_prompt: str = Field(default="", max_length=2000)
    strength: float = Field(default=0.35, ge=0.0, le=1.0, description="how much each tile is repainted")
    steps: int | None = Field(default=None, ge=1, le=100, description="a tile's steps (× strength run)")
    guidance: float | None = Field(default=None, ge=0.0, le=30.0)
    seed: Seed | None = None
    n: int = Field(default=1, ge=1, le=8)
    user_id: Id | None = None
    project_id: Id | None = None
    wait_s: float = wait_field(60)
    loras: Loras = []

    @field_validator("scale")
    @classmethod
    def _two_or_four(cls, scale: int) -> int:
        if scale not in (2, 4):
            raise ValueError("Input should be 2 or 4")
        return scale


class ControlSpec(Body):
    type: ControlType
    image: AssetId = Field(description="the source image; its control map is computed by the server")
    scale: float = Field(default=1.0, ge=0.0, le=2.0)


class ControlledGeneration(_ImageOptions):
    prompt: Prompt
    controls: list[ControlSpec] = Field(min_length=1, max_length=4)
    family: ClassVar[str] = "sdxl"  # the Union ControlNet's

    @property
    def control_list(self) -> list[ControlSpec]:
        return self.controls


class ImageEdit(_Encoding):
    family: ClassVar[str] = "flux"  # Kontext's

    image: AssetId
    prompt: Prompt
    steps: int | None = Field(default=None, ge=1, le=100)
    guidance: float | None = Field(default=None, ge=0.0, le=30.0)
    seed: Seed | None = None
    width: Side | None = None
    height: Side | None = None
    loras: Loras = []
    n: int = Field(default=1, ge=1, le=8)
    user_id: Id | None = None
    project_id: Id | None = None
    wait_s: float = wait_field(60)
    acceleration: AccelerationOption = "none"


class ImageOut(AssetRef):
    format: ImageFormat = "png"
    seed: int
    variant_id: str | None = Field(default=None, description="None: a fork's image, not a variant of its prompt")
    metadata: dict[str, Any] = {}


class ControlMapOut(AssetRef):
    type: ControlType


class ImagesResult(BaseModel):
    images: list[ImageOut]
    prompt_key: str = Field(description="the variant pool's key (prompt dedup); a fork's: its parent's")
    cache_hit: bool
    match: Match
    prompt_used: str = Field(description="the prompt the model ran (optimised, styled or a fork's own)")
    control_maps: list[ControlMapOut] = []
