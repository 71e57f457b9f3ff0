"""The OpenAI Images API's shapes (/openai/v1): its requests, mapped onto the native image bodies, and its answers."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import UploadFile
from pydantic import BaseModel, Field

from composition.schemas.common import PRIORITY, Body, Id, Prompt
from composition.schemas.images import ImageEdit, ImageGeneration, Loras
from config.composition import Lane, OpenAIArgs
from config.specs import families_with
from models.errors import InvalidRequest

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
        default=None, description="url (default): /v1/assets URLs on this server; b64_json: the PNG bytes inline")
    user: Id | None = Field(default=None, description="the end user (auth on: the API key's user instead)")
    priority: Lane | None = Field(default=None, description=f"Montage's extension (`extra_body`): {PRIORITY}")

    def family(self, args: OpenAIArgs, default: str) -> str:
        """The image family `model` names, itself or through an alias; `default` when not given."""
        family = args.models.get(self.model, self.model) if self.model else default
        if family not in families_with("generate"):
            known = ", ".join(sorted({*args.models, *families_with("generate")}))
            raise InvalidRequest("model", f"unknown model {self.model!r}; one of {known}")
        return family

    def native(self, wait_s: float) -> dict:
        """The native body's common fields: the size split into width and height, `user` as `user_id`."""
        fields: dict = {"prompt": self.prompt, "n": 1 if self.n is None else self.n, "user_id": self.user,
                        "wait_s": wait_s, "priority": self.priority}
        if self.size and self.size != "auto":
            fields["width"], fields["height"] = map(int, self.size.split("x"))
        return fields


class OpenAIImageGeneration(_OpenAIImages):
    """`images.generate`: text to image on SDXL or FLUX (the native /v1/images/generations); `loras`, Montage's
    extension (the client's `extra_body`), as on the native route."""

    loras: Loras = []

    def to_native(self, args: OpenAIArgs) -> ImageGeneration:
        return ImageGeneration.model_validate(self.native(args.wait_s) | {"model": self.family(args, "sdxl"),
                                                                          "loras": self.loras})


class OpenAIImageEdit(_OpenAIImages):
    """`images.edit`: an uploaded image changed as the prompt says, by FLUX.1 Kontext (the native /v1/images/edits).
    Sent as multipart/form-data."""

    image: UploadFile = Field(description="the source image: PNG, JPEG or WEBP")

    def to_native(self, args: OpenAIArgs, asset_id: str) -> ImageEdit:
        family = self.family(args, ImageEdit.family)
        if family != ImageEdit.family:
            raise InvalidRequest("model", f"edits run on {ImageEdit.family} (Kontext); {self.model!r} is {family}")
        return ImageEdit.model_validate(self.native(args.wait_s) | {"image": asset_id})


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
