"""The OpenAI Videos API's shapes (/openai/v1/videos): its requests, mapped onto the native video body, and the video
object a task is shown as."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import UploadFile
from pydantic import BaseModel, Field

from composition.schemas.common import TEXT_FIELDS, AccelerationOption, Body, Id, Prompt
from composition.schemas.openai_images import ModelName, OpenAISize
from composition.schemas.videos import VideoGeneration
from config.composition import OpenAIArgs
from config.ids import HEX_ID
from config.specs import families_with
from models.errors import InvalidRequest
from records.task_record import TaskRecord

Seconds = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,2}$", description="the clip's length in whole seconds, 1 or "
                                                                          "more (default: the family's default frames)")]
VIDEO_STATUS = {"queued": "queued", "running": "in_progress", "succeeded": "completed", "failed": "failed",
                "cancelled": "failed"}
KEYFRAME_SHARE = 0.2  # of a text-to-video task's progress: its keyframe; the clip is the rest


class OpenAIVideoCreate(Body):
    """`videos.create` (multipart/form-data): text to video, or `input_reference` animated."""

    model_config = TEXT_FIELDS

    prompt: Prompt
    model: ModelName | None = Field(default=None, description="svd, wan, or an alias (`composition.openai."
                                                              "video_models`: sora-2 → wan); none: wan")
    seconds: Seconds | None = None
    size: OpenAISize | None = None
    input_reference: UploadFile | None = Field(default=None, description="the image to animate (PNG, JPEG, WEBP); "
                                                                         "none: a keyframe is made from the prompt")
    user: Id | None = Field(default=None, description="the end user (auth on: the API key's user instead)")
    acceleration: AccelerationOption = "none"  # Montage's extension, as on the native route

    def family(self, args: OpenAIArgs) -> str:
        family = args.video_models.get(self.model, self.model) if self.model else "wan"
        if family not in families_with("animate"):
            known = ", ".join(sorted({*args.video_models, *families_with("animate")}))
            raise InvalidRequest("model", f"unknown model {self.model!r}; one of {known}")
        return family

    def to_native(self, family: str, image: str | None, num_frames: int | None) -> VideoGeneration:
        """The native body: `seconds` as `num_frames` (the caller's count at the family's fps), `size` split."""
        fields: dict[str, Any] = {"prompt": self.prompt, "model": family, "image": image, "user_id": self.user,
                                  "gif": False, "num_frames": num_frames, "acceleration": self.acceleration}
        if self.size and self.size != "auto":
            fields["width"], fields["height"] = map(int, self.size.split("x"))
        return VideoGeneration.model_validate(fields)


class OpenAIVideoRemix(Body):
    prompt: Prompt


class OpenAIVideoError(BaseModel):
    code: str
    message: str


class OpenAIVideo(BaseModel):
    """A video task as OpenAI's video object."""

    id: str
    object: Literal["video"] = "video"
    model: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(description="0 to 100, from the task's steps")
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    error: OpenAIVideoError | None = None
    prompt: str | None = None
    seconds: str
    size: str
    remixed_from_video_id: str | None = None

    @classmethod
    def of(cls, record: TaskRecord, ttl_s: int) -> OpenAIVideo:
        job, result = record.request or {}, record.result or {}
        progress = record.progress
        if keyframe := job.get("keyframe"):  # text to video: the keyframe's steps, then the clip's
            on_keyframe = record.stage in ("queued", "keyframe", "denoising") or record.waiting_for == keyframe["model"]
            progress = KEYFRAME_SHARE * progress if on_keyframe else KEYFRAME_SHARE + (1 - KEYFRAME_SHARE) * progress
        ended = record.terminal
        error = None
        if record.status == "cancelled":
            error = OpenAIVideoError(code="cancelled", message="the video was cancelled")
        elif record.status == "failed":
            error = OpenAIVideoError(code=(record.error or {}).get("code", "failed"),
                                     message=(record.error or {}).get("message", "the video failed"))
        clip = job | {name: result[name] for name in ("num_frames", "fps", "width", "height") if name in result}
        model = job.get("model") or (result.get("metadata") or {}).get("model", "")  # an imported task has no job
        return cls(id=video_id(record.id), model=model, status=VIDEO_STATUS[record.status],
                   progress=100 if record.status == "succeeded" else min(99, int(progress * 100)),
                   created_at=int(record.created_at), completed_at=int(record.updated_at) if ended else None,
                   expires_at=int(record.updated_at) + ttl_s if ended else None, error=error,
                   prompt=job.get("prompt"), seconds=str(round(clip.get("num_frames", 0) / max(clip.get("fps", 1), 1))),
                   size=f"{clip.get('width')}x{clip.get('height')}",
                   remixed_from_video_id=video_id(job["remixed_from"]) if job.get("remixed_from") else None)


class OpenAIVideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIVideo]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class OpenAIVideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


VIDEO_PREFIX = "video_"


def video_id(task_id: str) -> str:
    """A video task's id as OpenAI's clients see it."""
    return VIDEO_PREFIX + task_id


def task_of(video: str) -> str | None:
    """The task id a video id names; None for an id of another shape."""
    task_id = video.removeprefix(VIDEO_PREFIX)
    return task_id if video.startswith(VIDEO_PREFIX) and re.fullmatch(HEX_ID, task_id) else None
