"""Encodes raw pipeline output into the serialisable results that cross handles."""
from __future__ import annotations

import numpy as np

from models.media import encode_png, frames_to_gif, frames_to_mp4
from models.types import EditRequest, ImageRequest, ImageResult, Metadata, VideoRequest, VideoResult


def image_result(request: ImageRequest | EditRequest, image: np.ndarray, metadata: Metadata) -> ImageResult:
    """PNG for one request's float image (H, W, 3)."""
    return ImageResult(png=encode_png(image), width=request.width, height=request.height, seed=request.seed,
                       metadata=metadata)


def video_result(request: VideoRequest, frames: np.ndarray, metadata: Metadata) -> VideoResult:
    """MP4 (and GIF when asked) for one request's float frames (F, H, W, 3)."""
    gif = frames_to_gif(frames, request.fps) if request.gif else None
    return VideoResult(mp4=frames_to_mp4(frames, request.fps), gif=gif, num_frames=len(frames), fps=request.fps,
                       width=request.width, height=request.height, seed=request.seed, metadata=metadata)
