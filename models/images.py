"""Safe decoding of client images: format, mode and pixel limits are checked before any pixel is decoded."""
from __future__ import annotations

import io
import warnings

from PIL import Image

from models.errors import InvalidRequest

MAX_PIXELS = 4096 * 4096
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
ACCEPTED_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P"})


def inspect_image(data: bytes, field: str = "image", max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Reads only the header: returns (width, height) or raises `InvalidRequest` naming `field`."""
    return inspect_header(data, field, max_pixels)[1:]


def inspect_header(data: bytes, field: str = "image", max_pixels: int = MAX_PIXELS,
                   formats: frozenset[str] = ACCEPTED_FORMATS) -> tuple[str, int, int]:
    """Reads only the header: returns (format, width, height) or raises `InvalidRequest` naming `field`."""
    if not data:
        raise InvalidRequest(field, "empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt, mode, size = image.format, image.mode, image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(field, "image has too many pixels") from None
    except Exception:
        raise InvalidRequest(field, "not a decodable image") from None
    if fmt not in formats:
        raise InvalidRequest(field, f"format {fmt} not accepted, use {', '.join(sorted(formats))}")
    if mode not in ACCEPTED_MODES:
        raise InvalidRequest(field, f"image mode {mode} not accepted, use RGB, RGBA, L or P")
    if size[0] * size[1] > max_pixels:
        raise InvalidRequest(field, f"{size[0]}x{size[1]} exceeds {max_pixels} pixels")
    return fmt, *size


def decode_rgb(data: bytes, field: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decodes an already-inspected image to RGB."""
    inspect_image(data, field, max_pixels)
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
