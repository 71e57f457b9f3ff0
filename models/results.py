"""Encodes raw pipeline output into the serialisable results that cross handles."""
from __future__ import annotations

import numpy as np

from models.media import as_uint8, encode_png, encode_video, frames_to_gif
from models.watermark import mark_frames
from models.types import EditRequest, ImageRequest, ImageResult, Metadata, VideoRequest, VideoResult


def image_result(request: ImageRequest | EditRequest, image: np.ndarray, metadata: Metadata) -> ImageResult:
    """PNG for one request's float image (H, W, 3), watermarked when the request asks."""
    return ImageResult(png=encode_png(_marked(request.watermark, image)[0]), width=request.width, height=request.height, seed=request.seed,
                       metadata=metadata)


def video_result(request: VideoRequest, frames: np.ndarray, metadata: Metadata) -> VideoResult:
    """The clip in the request's format (and a GIF when asked: the clip itself when that is a GIF) for one request's
    float frames (F, H, W, 3), each watermarked when the request asks."""
    frames = _marked(request.watermark, frames)
    fmt = request.output_format
    gif = frames_to_gif(frames, request.fps) if request.gif or fmt == "gif" else None
    video = gif if fmt == "gif" else encode_video(frames, request.fps, fmt)
    return VideoResult(video=video, format=fmt, gif=gif if request.gif else None, num_frames=len(frames),
                       fps=request.fps, width=request.width, height=request.height, seed=request.seed,
                       metadata=metadata)


def _marked(watermark: bool, frames: np.ndarray) -> np.ndarray:
    """uint8 frames (F, H, W, 3) of float frames (or one frame), with the watermark when asked."""
    frames = as_uint8(frames)
    return mark_frames(frames) if watermark else frames
