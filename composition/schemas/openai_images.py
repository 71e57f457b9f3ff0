"""The OpenAI Images API's shapes (/openai/v1): its requests, mapped onto the native image bodies, and its answers."""
from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import UploadFile
from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator

from composition.schemas.common import PRIORITY, TEXT_FIELDS, AccelerationOption, Body, Id, Prompt
from composition.schemas.images import ImageEdit, ImageGeneration, ImageInpaint, Loras
from config.composition import Lane, OpenAIArgs, OpenAIQuality
from config.families import GenerationDefaults
from config.specs import families_with
from models.errors import InvalidRequest
from models.formats import ImageFormat

OpenAISize = Annotated[str, Field(pattern=r"^(auto|[0-9]{1,5}x[0-9]{1,5})$",
                                  description='"WxH" (each side 8 to 2048, a multiple of the family\'s grid) or '
                                              '"auto": the family\'s default size')]
ModelName = Annotated[str, Field(max_length=100, description="sdxl, flux, or a configured alias (dall-e-3 → flux)")]


class _OpenAIImages(Body):
    """What generations and edits share; `n` has the native route's range (1 to 8)."""

    prompt: Prompt
    model: ModelName | None = None
    n: int | None = Field(default=None, description="images to make, 1 to 8 (default 1)")
    size: OpenAISize | None = None
    response_format: Literal["url", "b64_json"] | None = Field(
        default=None, description="url (default): /v1/assets URLs on this server; b64_json: the image bytes inline")
    user: Id | None = Field(default=None, description="the end user (auth on: the API key's user instead)")
    quality: OpenAIQuality | None = Field(
        default=None, description="steps as a multiple of the family's default (composition.openai.quality_steps): "
                                  "low ½, medium, standard and auto 1, high and hd 1.5")
    output_format: ImageFormat | None = Field(default=None, description="png (default), jpeg or webp")
    output_compression: int | None = Field(default=None, ge=0, le=100,
                                           description="jpeg and webp: their quality (0 as 1); ignored for png")
    background: Literal["auto", "opaque", "transparent"] | None = Field(
        default=None, description="auto or opaque: every image is opaque; transparent: a 400 (no family makes alpha)")
    moderation: Literal["low", "auto"] | None = Field(default=None, description="accepted; nothing is moderated")
    priority: Lane | None = Field(default=None, description=f"Montage's extension (`extra_body`): {PRIORITY}")
    acceleration: AccelerationOption = "none"  # Montage's extension (`extra_body`), as on the native routes

    @model_validator(mode="after")
    def _opaque(self) -> _OpenAIImages:
        if self.background == "transparent":
            raise ValueError("background: transparent is not supported, no model family makes alpha; "
                             "use auto or opaque")
        return self

    def family(self, args: OpenAIArgs, default: str) -> str:
        """The image family `model` names, itself or through an alias; `default` when not given."""
        family = args.models.get(self.model, self.model) if self.model else default
        if family not in families_with("generate"):
            known = ", ".join(sorted({*args.models, *families_with("generate")}))
            raise InvalidRequest("model", f"unknown model {self.model!r}; one of {known}")
        return family

    def native(self, args: OpenAIArgs, family: str, defaults: Callable[[str], GenerationDefaults]) -> dict:
        """The native body's common fields: the size split into width and height, `user` as `user_id`, `quality` as
        steps, `output_format` and `output_compression` as the native encoding."""
        fields: dict = {"prompt": self.prompt, "n": 1 if self.n is None else self.n, "user_id": self.user,
                        "wait_s": args.wait_s, "output_format": self.output_format or "png", "priority": self.priority,
                        "acceleration": self.acceleration}
        if self.size and self.size != "auto":
            fields["width"], fields["height"] = map(int, self.size.split("x"))
        if self.quality:
            steps = defaults(family).steps * args.quality_steps.get(self.quality, 1.0)
            fields["steps"] = min(100, max(1, round(steps)))
        if self.output_compression is not None and fields["output_format"] != "png":
            fields["quality"] = max(1, self.output_compression)
        return fields


class OpenAIImageGeneration(_OpenAIImages):
    """`images.generate`: text to image on SDXL or FLUX (the native /v1/images/generations); `loras`, Montage's
    extension (the client's `extra_body`), as on the native route."""

    style: Literal["vivid", "natural"] | None = Field(
        default=None, description='vivid: the native style "vivid" (", vivid style" after the prompt); natural: '
                                  'the prompt as written')
    loras: Loras = []

    def to_native(self, args: OpenAIArgs, defaults: Callable[[str], GenerationDefaults]) -> ImageGeneration:
        family = self.family(args, "sdxl")
        return ImageGeneration.model_validate(self.native(args, family, defaults) | {
            "model": family, "loras": self.loras, "style": "vivid" if self.style == "vivid" else None})


class OpenAIImageEdit(_OpenAIImages):
    """`images.edit`: an uploaded image changed as the prompt says, by FLUX.1 Kontext (the native /v1/images/edits),
    or, with a `mask`, inpainted by the family `model` names (the native /v1/images/inpaint). Sent as
    multipart/form-data."""

    model_config = TEXT_FIELDS

    image: UploadFile | list[UploadFile] = Field(
        validation_alias=AliasChoices("image", "image[]"),
        description="the source image: PNG, JPEG or WEBP; without `size`, the edit keeps its size as the family can "
                    "serve it. Also as a list of one (`image[]`, as the client sends `image=[...]`)")
    mask: UploadFile | None = Field(default=None, description="a PNG of the image's size whose fully transparent "
                                                              "pixels are repainted (inpainting); none: Kontext edits "
                                                              "the whole image")

    @field_validator("image")
    @classmethod
    def _one_image(cls, image: UploadFile | list[UploadFile]) -> UploadFile:
        if not isinstance(image, list):
            return image
        if len(image) != 1:
            raise ValueError(f"an edit takes one image; {len(image)} were sent")
        return image[0]

    def to_native(self, args: OpenAIArgs, defaults: Callable[[str], GenerationDefaults], asset_id: str,
                  mask_id: str | None = None) -> ImageEdit | ImageInpaint:
        family = self.family(args, ImageEdit.family)
        if mask_id is not None:
            return ImageInpaint.model_validate(self.native(args, family, defaults) | {
                "image": asset_id, "mask": mask_id, "model": family})
        if family != ImageEdit.family:
            raise InvalidRequest("model", f"edits run on {ImageEdit.family} (Kontext); {self.model!r} is {family}: "
                                          "inpainting (with a mask) runs on it")
        return ImageEdit.model_validate(self.native(args, family, defaults) | {"image": asset_id})


class OpenAIImage(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = Field(default=None, description="the prompt as rendered (with a style, if any)")


class OpenAIImagesResponse(BaseModel):
    created: int = Field(description="Unix seconds")
    data: list[OpenAIImage]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, insufficient_quota, requests (rate limit), server_error")
    param: str | None = Field(description="the request parameter to blame, if one is")
    code: str | None


class OpenAIError(BaseModel):
    """Every error answer under /openai/v1, in OpenAI's shape."""

    error: OpenAIErrorDetail


OPENAI_ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": OpenAIError, "description": description} for status, description in {
        400: "an invalid request, naming the param", 401: "no valid API key", 403: "the key's tier is not configured",
        404: "not found", 409: "the task was cancelled", 413: "a body or file too large",
        429: "over the rate limit (Retry-After) or a daily quota", 500: "a task failed inside a model",
        503: "the store or the model family is unavailable (Retry-After)",
        504: "the images were not ready within composition.openai.wait_s"}.items()}
