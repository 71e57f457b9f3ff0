"""Image to video (SVD or Wan) and time estimates."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from composition.schemas.common import (AccelerationOption, AssetId, AssetRef, Id, Seed, TaskBody, VideoModel,
                                        check_acceleration, wait_field)
from models.formats import VideoFormat
from models.types import MAX_FRAMES, Side


class VideoOptions(TaskBody):
    """How to animate an image; unset sizes, frames, fps and steps take the model's defaults."""

    prompt: str = Field(default="", max_length=2000)
    model: VideoModel = "svd"
    num_frames: int | None = Field(default=None, ge=2, le=MAX_FRAMES)
    fps: int | None = Field(default=None, ge=1, le=60)
    steps: int | None = Field(default=None, ge=1, le=100)
    seed: Seed = 0
    gif: bool = True
    output_format: VideoFormat = Field(default="mp4", description="the clip's container: mp4 (H.264), webm (VP9) "
                                                                  "or gif")
    width: Side | None = None
    height: Side | None = None
    user_id: Id | None = None
    project_id: Id | None = None
    wait_s: float = wait_field(0)
    acceleration: AccelerationOption = "none"

    @model_validator(mode="after")
    def _cached_family(self) -> VideoOptions:
        check_acceleration(self.acceleration, self.model)
        return self


class VideoGeneration(VideoOptions):
    image: AssetId | None = Field(default=None, description="the image to animate; none: text to video, a keyframe "
                                                            "made from `prompt` first (`composition.keyframe_model`)")


class VideoRemix(VideoGeneration):
    """A video of another video task's source and settings with a new prompt (OpenAI's remix; not a route's body)."""

    remixed_from: Id


class VideoOut(BaseModel):
    video: AssetRef
    format: VideoFormat = "mp4"
    gif: AssetRef | None = None
    num_frames: int
    fps: int
    width: int
    height: int
    seed: int
    metadata: dict[str, Any]
    keyframe: AssetRef | None = Field(default=None, description="text to video: the keyframe made from the prompt")


class VideoEstimate(BaseModel):
    model: VideoModel
    num_frames: int
    steps: int
    width: int
    height: int
    seconds: float = Field(description="model time: a fixed cost per clip plus a cost per pixel-frame-step, both "
                                       "fitted to this model's measured clips")
    measured: bool = Field(description="False until a video of this model has run: then a conservative prior")
    samples: int
