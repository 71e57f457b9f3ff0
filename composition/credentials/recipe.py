"""The recipe of an output: everything that made it, what its manifest says and what replay re-renders."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from config.acceleration import Acceleration

RECIPE_LABEL = "org.montage.recipe"  # the manifest assertion that holds a recipe
PRIVATE = {"prompt", "negative_prompt"}  # left out of manifests unless `credentials.include_prompt`


class RecipeAdapter(BaseModel):
    id: str
    scale: float
    digest: str | None = Field(default=None, description="the adapter file's SHA-256 (16 hex digits); None: hub")


class RecipeControl(BaseModel):
    type: str
    image: str = Field(description="the control map's asset id")
    scale: float


class Recipe(BaseModel):
    """How one output was made. A rendition's recipe is its parent's, with `parent`, `format` and `quality` its own;
    a result served from cache is the same output, and the renditions made for it say `served_from_cache`."""

    operation: Literal["generate", "edit", "inpaint", "outpaint", "upscale", "animate", "storyboard"]
    family: str
    model: str
    model_source: str
    device: str
    seed: int
    steps: int
    width: int
    height: int
    guidance: float
    prompt: str = ""
    negative_prompt: str = ""
    prompt_key: str | None = None
    loras: list[RecipeAdapter] = []
    controls: list[RecipeControl] = []
    source: str | None = Field(default=None, description="the asset edited, repainted, extended, upscaled or animated")
    strength: float | None = Field(default=None, description="image to image: the share of the steps run")
    mask: str | None = Field(default=None, description="an inpainting's mask asset (none: the source's alpha)")
    canvas: tuple[int, int, int, int] | None = Field(default=None, description="an outpainting's (left, top, width, "
                                                                               "height)")
    true_cfg_scale: float = 1.0
    prompt_weighting: bool = False
    acceleration: Acceleration = Field(default="none", description="step_cache: the family's step cache ran (a replay "
                                                                   "runs it too)")
    num_frames: int | None = None
    fps: int | None = None
    format: str
    quality: int | None = None
    watermark: bool = False
    batch_size: int = 1
    resumed_from_step: int | None = None
    fused_requests: int | None = None
    started_from: dict[str, Any] | None = Field(default=None, description="a kept latent it started from (approximate "
                                                "reuse of a near prompt, or a fork): a replay starts from noise")
    parent: str | None = Field(default=None, description="a rendition: the asset it re-encodes")
    parts: list[str] = Field(default=[], description="a storyboard's video: the clips it joins, in order")
    served_from_cache: bool = False

    @classmethod
    def of(cls, metadata: dict[str, Any], **fields: Any) -> Recipe:
        """A recipe from a request's `fields` and its result's metadata (model, source, device, scheduler facts)."""
        facts = {name: metadata.get(name) for name in ("device", "resumed_from_step", "fused_requests")}
        return cls(model=metadata["model"], model_source=metadata["source"], batch_size=metadata.get("batch_size", 1),
                   **facts, **fields)

    def manifest_data(self, include_prompt: bool) -> dict[str, Any]:
        """The recipe as its manifest assertion holds it: the prompt only when `include_prompt`."""
        return self.model_dump(exclude=None if include_prompt else PRIVATE)

    def rendition(self, parent: str, fmt: str, quality: int | None, served_from_cache: bool) -> Recipe:
        return self.model_copy(update=dict(parent=parent, format=fmt, quality=quality,
                                           served_from_cache=served_from_cache))
