"""Shared field types and response shapes."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, HttpUrl, model_validator

from composition.schemas.assets import asset_url
from config.acceleration import Acceleration
from config.composition import Lane
from config.ids import HEX_ID, NAME_ID
from config.specs import families_with, no_step_cache, step_cached
from records.webhooks import TERMINAL_EVENTS, WebhookEvent

Id = Annotated[str, Field(pattern=NAME_ID, description="letters, digits, _ . -")]
AssetId = Annotated[str, Field(pattern=HEX_ID, description="an asset id from POST /v1/assets")]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def text(max_length: int) -> Any:
    """Free text a request gives: at least one character that is not whitespace, at most `max_length`."""
    return Annotated[str, Field(min_length=1, max_length=max_length), AfterValidator(_not_blank)]


Prompt = text(2000)
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Match = Literal["exact", "semantic", "new"]  # how dedup found a prompt's key
ImageModel = Literal[families_with("generate")]  # "sdxl", "flux": the registry's image families
VideoModel = Literal[families_with("animate")]  # "svd", "wan"
AccelerationOption = Annotated[Acceleration, BeforeValidator(lambda value: "none" if value is None else value), Field(
    description="none (default; null as none) or step_cache: the family's step cache (flux, wan) skips the steps that "
                "change little, and metadata.steps_skipped says how many; other pixels than none's, so another "
                "prompt key")]


def check_acceleration(acceleration: Acceleration, family: str) -> None:
    """A model validator's check: ValueError naming `acceleration` for a family without a step cache."""
    if acceleration != "none" and not step_cached(family):
        raise ValueError(f"acceleration: {no_step_cache(family)}")


def wait_field(default: float) -> Any:
    return Field(default=default, ge=0, le=600, description="seconds to wait for the result before answering 202")


JSON_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a decimal number"), (str, "a string"),
              (list, "an array"), (dict, "an object"), (type(None), "null"))


def sent_instead(error: dict) -> str:
    """For a validation error of a value of another JSON type than its field's (`"2"` or `true` for an integer,
    `5` for one of some names): what was sent (", not a string"); "" for any other error."""
    kind, value = error.get("type", ""), error.get("input")
    if kind in ("literal_error", "enum"):  # one of some names (quoted in `expected`) or of some numbers
        wrong = isinstance(value, str) != ("'" in str((error.get("ctx") or {}).get("expected", "")))
    else:
        wrong = kind.endswith("_type")
    if "input" not in error or not wrong:
        return ""
    return next((f", not {name}" for python, name in JSON_TYPES if isinstance(value, python)), "")


class Body(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 422 naming it, non-finite numbers (NaN, Infinity), which
    no bound catches by name, and values of another JSON type (`"2"`, `true` or `2.0` for an integer, `1` or `"yes"`
    for a boolean, `"0.5"` for a number), as OpenAI's API does: a value is never read as something it is not."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


TEXT_FIELDS = ConfigDict(strict=False)  # a body sent as form fields or a query string: its values arrive as text


class Notify(BaseModel):
    """A task's webhook: `webhook_url` is told of the events in `webhook_events` (Standard Webhooks, signed)."""

    webhook_url: HttpUrl | None = Field(default=None, description="http(s) URL told of this task's events; its "
                                                                  "host must be allowed (never a private address "
                                                                  "unless configured)")
    webhook_events: list[WebhookEvent] = Field(default_factory=lambda: list(TERMINAL_EVENTS), min_length=1,
                                               max_length=4, description="succeeded, failed, cancelled, progress "
                                                                         "(each stage at 25, 50 and 75 %; a "
                                                                         "storyboard's whole progress)")

    @model_validator(mode="after")
    def _events_need_a_url(self) -> Notify:
        if self.webhook_url is None and self.webhook_events != TERMINAL_EVENTS:
            raise ValueError("webhook_events: give webhook_url too")
        return self


PRIORITY = ("high, normal or low: the task's lane, at most the API key's tier's (a higher one is capped to it); "
            "none: the tier's (auth off: any lane; none: normal)")


class Prioritised(BaseModel):
    """A task's lane: `priority` as asked, capped by the caller's tier (with auth off every lane is allowed)."""

    priority: Lane | None = Field(default=None, description=PRIORITY)


class Streamed(BaseModel):
    """An LLM route's `stream` option (composition/streaming.py)."""

    stream: bool = Field(default=False, description="answer with Server-Sent Events: the model's text as it is "
                                                    "decoded (`delta`), then the final JSON (`result`)")


class TaskBody(Body, Notify, Prioritised):
    """A request that may become a task, so it may carry a webhook and a priority."""


class AssetRef(BaseModel):
    asset_id: str
    url: str

    @classmethod
    def of(cls, asset_id: str) -> AssetRef:
        return cls(asset_id=asset_id, url=asset_url(asset_id))


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorEnvelope(BaseModel):
    """Every error answer: what went wrong and, when one is to blame, which field; never a stack trace."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": description} for status, description in {
        400: "a body that cannot be parsed", 401: "no valid API key", 403: "the key's tier is not configured",
        404: "not found, or not the caller's", 409: "the task was cancelled, or has already finished",
        413: "a body or file too large",
        415: "not a supported image, or a body of another content type than the route takes",
        422: "an invalid request, naming the field",
        429: "over the rate limit or a daily quota (Retry-After)", 500: "a task failed inside a model",
        503: "the store is unavailable (Retry-After)"}.items()}


class Accepted(BaseModel):
    """202: the task runs on; poll `status_url` or stream `/events`."""

    task_id: str
    status: str
    status_url: str
