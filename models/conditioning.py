"""Control maps for the SDXL Union ControlNet and word rendering (numpy/OpenCV/Pillow only)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.types import ControlType


FONT_PACKAGE = "noto_cjk_sans_jp_regular"  # pip: noto-cjk-sans-jp-regular
FONT_FILE = "NotoSansCJKjp-Regular.otf"
SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # apt: fonts-noto-cjk
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # apt: fonts-wqy-zenhei
)
MAX_CANVAS = 4096
_FILL = 0.9  # fraction of the canvas the rendered text may span
_NOTDEF_PROBE = "\U0010ffff"  # a non-character no font maps: renders as .notdef

# First entries of the ADE20K palette used by segmentation ControlNets.
ADE20K_PALETTE = np.array(
    [
        [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50],
        [4, 200, 3], [120, 120, 80], [140, 140, 140], [204, 5, 255],
        [230, 230, 230], [4, 250, 7], [224, 5, 255], [235, 255, 7],
        [150, 5, 61], [120, 120, 70], [8, 255, 51], [255, 6, 82],
        [143, 255, 140], [204, 255, 4], [255, 51, 7], [204, 70, 3],
        [0, 102, 200], [61, 230, 250], [255, 6, 51], [11, 102, 255],
        [255, 7, 71], [255, 9, 224], [9, 7, 230], [220, 220, 220],
        [255, 9, 92], [112, 9, 255], [8, 255, 214], [7, 255, 224],
    ],
    dtype=np.uint8,
)  # fmt: skip


def _rgb(image: Image.Image) -> np.ndarray:
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL.Image, got {type(image).__name__}")
    return np.asarray(image.convert("RGB"))


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2))


def canny(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """Canny edges, white on black (RGB)."""
    if not 0 <= low <= high:
        raise ValueError(f"low must satisfy 0 <= low <= high, got low={low}, high={high}")
    gray = cv2.cvtColor(_rgb(image), cv2.COLOR_RGB2GRAY)
    return _gray_to_rgb(cv2.Canny(gray, low, high))


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def depth(image: Image.Image) -> Image.Image:
    """Heuristic pseudo-depth (near = bright): vertical prior + local sharpness + blurred luminance."""
    gray = cv2.cvtColor(_rgb(image), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    h, w = gray.shape
    sigma = max(1.0, min(h, w) / 32)
    luminance = cv2.GaussianBlur(gray, (0, 0), sigma)
    sharpness = cv2.GaussianBlur(np.abs(cv2.Laplacian(gray, cv2.CV_32F)), (0, 0), 2 * sigma)
    vertical = np.repeat(np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None], w, axis=1)
    combined = 0.5 * vertical + 0.3 * _normalise(sharpness) + 0.2 * luminance
    smooth = cv2.GaussianBlur(combined, (0, 0), sigma)
    return _gray_to_rgb((_normalise(smooth) * 255.0 + 0.5).astype(np.uint8))


def segmentation(image: Image.Image, segments: int = 8) -> Image.Image:
    """Colour-clustered regions (k-means in Lab, fixed seed) painted with the ADE20K palette."""
    if not 2 <= segments <= len(ADE20K_PALETTE):
        raise ValueError(f"segments must be in [2, {len(ADE20K_PALETTE)}], got {segments}")
    rgb = _rgb(image)
    h, w = rgb.shape[:2]
    scale = min(1.0, 256 / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(cv2.medianBlur(small, 3), cv2.COLOR_RGB2LAB)
    samples = lab.reshape(-1, 3).astype(np.float32)
    k = min(segments, len(np.unique(samples, axis=0)))  # k-means splits duplicate points otherwise
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, labels, centers = cv2.kmeans(samples, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)  # type: ignore[call-overload]
    rank = np.argsort(np.argsort(centers[:, 0], kind="stable"))  # order clusters by lightness
    label_map = rank[labels.reshape(small.shape[:2])].astype(np.uint8)
    label_map = cv2.medianBlur(label_map, 5)
    label_map = cv2.resize(label_map, (w, h), interpolation=cv2.INTER_NEAREST)
    return Image.fromarray(ADE20K_PALETTE[label_map])


def scribble(image: Image.Image) -> Image.Image:
    """Thick simplified strokes, white on black: colour edges of a smoothed image, short fragments removed, dilated."""
    rgb = _rgb(image)
    side = min(rgb.shape[:2])
    smooth = cv2.bilateralFilter(cv2.medianBlur(rgb, 5), 9, 60, 60)
    edges = np.max([cv2.Canny(smooth[..., c], 40, 100) for c in range(3)], axis=0)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(edges, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= max(24, side // 16)  # drop short fragments
    keep[0] = False  # background
    strokes = np.where(keep[labels], 255, 0).astype(np.uint8)
    thickness = max(3, side // 128) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (thickness, thickness))
    thick = cv2.dilate(strokes, kernel)
    rounded = cv2.threshold(cv2.GaussianBlur(thick, (0, 0), thickness / 3), 127, 255, cv2.THRESH_BINARY)[1]
    return _gray_to_rgb(rounded)


_MAPS = {"canny": canny, "depth": depth, "segmentation": segmentation, "scribble": scribble,
         "tile": lambda image: image.convert("RGB")}  # tile: the image itself guides (upscaling, detail)


def control_map(kind: ControlType, image: Image.Image) -> Image.Image:
    """Compute the control map of the given kind (same size as ``image``, RGB)."""
    if kind not in _MAPS:
        raise ValueError(f"type must be one of {sorted(_MAPS)}, got {kind!r}")
    return _MAPS[kind](image)


def font_path() -> Path:
    """Path of a CJK-capable font: the pip package first, then known system paths."""
    try:
        packaged = Path(str(resources.files(FONT_PACKAGE) / FONT_FILE))
    except ModuleNotFoundError:
        packaged = None
    for path in (packaged, *map(Path, SYSTEM_FONTS)):
        if path is not None and path.is_file():
            return path
    raise FileNotFoundError(
        "no CJK font found: pip install noto-cjk-sans-jp-regular (or apt-get install fonts-noto-cjk)"
    )


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path()), size)


def missing_glyphs(text: str) -> list[str]:
    """Characters of ``text`` (excluding whitespace) that the font renders as its .notdef box."""
    font = _font(32)
    notdef = font.getmask(_NOTDEF_PROBE)
    notdef_key = (notdef.size, bytes(notdef))
    missing = []
    for char in dict.fromkeys(c for c in text if not c.isspace()):
        mask = font.getmask(char)
        if (mask.size, bytes(mask)) == notdef_key:
            missing.append(char)
    return missing


def _text_bbox(text: str, size: int) -> tuple[float, float, float, float]:
    return ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox((0, 0), text, font=_font(size), align="center")


def render_text(text: str, width: int = 512, height: int = 512) -> Image.Image:
    """Render ``text`` (Latin or CJK; newlines allowed) black on white, centred, filling most of the canvas."""
    if not text or not text.strip():
        raise ValueError("text must not be empty or whitespace")
    for name, value in (("width", width), ("height", height)):
        if not 8 <= value <= MAX_CANVAS:
            raise ValueError(f"{name} must be in [8, {MAX_CANVAS}], got {value}")
    text = text.strip()
    if missing := missing_glyphs(text):
        raise ValueError(f"text contains characters the font cannot render: {''.join(missing)!r}")
    size = height
    left, top, right, bottom = _text_bbox(text, size)
    size = max(1, int(size * min(_FILL * width / (right - left), _FILL * height / (bottom - top))))
    while size > 1:
        left, top, right, bottom = _text_bbox(text, size)
        if right - left <= _FILL * width and bottom - top <= _FILL * height:
            break
        size -= 1
    canvas = Image.new("RGB", (width, height), "white")
    origin = ((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top)
    ImageDraw.Draw(canvas).multiline_text(origin, text, font=_font(size), fill="black", align="center")
    return canvas
