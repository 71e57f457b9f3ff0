"""Safe decoding of client images (format, mode and pixel limits are checked before any pixel is decoded) and
inpainting's repaint masks."""
from __future__ import annotations

import io
import warnings

import numpy as np
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


def check_decodes(data: bytes, field: str = "image") -> None:
    """`InvalidRequest` naming `field` unless every pixel of an inspected image decodes (a truncated or corrupt file
    passes the header's check)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:
        raise InvalidRequest(field, "not a decodable image (truncated or corrupt)") from None


def decode_rgb(data: bytes, field: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decodes an already-inspected image to RGB."""
    inspect_image(data, field, max_pixels)
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def repaint_mask(image: bytes, mask: bytes | None, field: str = "mask") -> np.ndarray:
    """Where an inpainting repaints, (H, W) booleans of the image's size: the mask's white pixels (luminance ≥ 128;
    white = repaint) or, without a mask, the image's fully transparent ones (as OpenAI's Images API reads an image's
    alpha). `InvalidRequest` naming `field` for a mask of another size or one with nothing to repaint."""
    source = inspect_image(image, "image")
    if mask is None:
        wanted = transparent(image, field)
    else:
        if (size := inspect_image(mask, field)) != source:
            raise InvalidRequest(field, f"mask is {size[0]}x{size[1]}, the image {source[0]}x{source[1]}: give one of "
                                        "the image's size")
        with Image.open(io.BytesIO(mask)) as picture:
            wanted = np.asarray(picture.convert("L")) >= 128
    if not wanted.any():
        raise InvalidRequest(field, "nothing to repaint: the mask has no white pixels" if mask is not None
                             else "nothing to repaint: the image has no transparent pixels")
    return wanted


def transparent(data: bytes, field: str = "mask") -> np.ndarray:
    """An image's fully transparent pixels, (H, W) booleans (OpenAI's Images API repaints them); `InvalidRequest`
    naming `field` for an image without an alpha channel."""
    inspect_image(data, field)
    with Image.open(io.BytesIO(data)) as picture:
        if "A" not in picture.getbands() and "transparency" not in picture.info:
            raise InvalidRequest(field, "no alpha channel: its fully transparent pixels are what is repainted (the "
                                        "native /v1/images/inpaint also takes a white = repaint mask)")
        return np.asarray(picture.convert("RGBA"))[..., 3] == 0


def mask_png(wanted: np.ndarray) -> bytes:
    """A repaint mask as a PNG (mode L: 255 = repaint, 0 = keep)."""
    buffer = io.BytesIO()
    Image.fromarray(wanted.astype(np.uint8) * 255, "L").save(buffer, "PNG")
    return buffer.getvalue()


def outpaint_canvas(image: bytes, left: int, top: int, width: int, height: int) -> tuple[bytes, bytes]:
    """Outpainting's inpainting: the image placed at (left, top) on a canvas of width × height, the new area its edge
    pixels carried outwards, and the mask of that new area (PNG bytes of each)."""
    pixels = np.asarray(decode_rgb(image))
    h, w = pixels.shape[:2]
    pad = ((top, height - h - top), (left, width - w - left), (0, 0))
    canvas = np.pad(pixels, pad, mode="edge")
    wanted = np.ones((height, width), bool)
    wanted[top:top + h, left:left + w] = False
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "PNG")
    return buffer.getvalue(), mask_png(wanted)


def outpaint_geometry(size: tuple[int, int], margins: tuple[int, int, int, int], aspect: tuple[int, int] | None,
                      grid: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of an outpainting's canvas: the image's size plus its margins (left, right, top,
    bottom) or, for an aspect (W, H), plus what reaches it on the short side (half each side); rounded up to `grid`,
    the rounding added on the right and bottom."""
    w, h = size
    left, right, top, bottom = margins
    if aspect is not None:
        if w * aspect[1] < h * aspect[0]:  # too narrow: widened
            extra = -(-h * aspect[0] // aspect[1]) - w
            left, right = extra // 2, extra - extra // 2
        else:
            extra = -(-w * aspect[1] // aspect[0]) - h
            top, bottom = extra // 2, extra - extra // 2
    return left, top, -(-(w + left + right) // grid) * grid, -(-(h + top + bottom) // grid) * grid
