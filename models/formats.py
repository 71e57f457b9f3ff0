"""The media formats a request may ask for and their content types: names only, no codecs (the client reads them)."""
from __future__ import annotations

from typing import Literal

ImageFormat = Literal["png", "jpeg", "webp"]
VideoFormat = Literal["mp4", "webm", "gif"]
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp",
                               "mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}  # format → content type
