"""Frames <-> media (MP4/WebM/GIF; PNG/JPEG/WebP) using imageio-ffmpeg's bundled ffmpeg and Pillow.

OpenCV and imageio-ffmpeg are imported where video is encoded or resized, so images need neither (a GPU box
that only benchmarks the models may lack both)."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from models.formats import ImageFormat, VideoFormat

# ffmpeg started by exec alone (vfork): imageio-ffmpeg's default `preexec_fn` forks the whole process and runs its fork
# handlers, and in a replica gRPC's (Ray's threads call into it) aborted that child now and then.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")
MAX_FPS = 120
_CRF_QUALITY = 6  # imageio-ffmpeg quality 6 -> libx264 -crf 20
_VP9_PARAMS = ["-crf", "32", "-b:v", "0", "-deadline", "good", "-cpu-used", "4", "-row-mt", "1"]  # constant quality

DEFAULT_QUALITY = 90  # JPEG and WebP, when a request names none


@dataclass(frozen=True)
class VideoInfo:
    """Properties of a decoded MP4; ``num_frames`` counts actually decoded frames."""

    num_frames: int
    width: int
    height: int
    fps: float


def as_uint8(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Return frames as uint8 (F,H,W,3); floats are taken as [0,1] (clipped), (H,W,3) is one frame."""
    arr = np.asarray(frames)
    if arr.size == 0:
        raise ValueError("frames must not be empty")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must have shape (F,H,W,3) or (H,W,3), got {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        return np.ascontiguousarray((np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    raise ValueError(f"frames must be uint8 or float in [0,1], got dtype {arr.dtype}")


def _check_fps(fps: float) -> None:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= MAX_FPS:
        raise ValueError(f"fps must be in (0, {MAX_FPS}], got {fps!r}")


def _check_max_side(max_side: int) -> None:
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """Edge-pad H and W up to even numbers (yuv420p needs even sizes); adds at most 1 px."""
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def frames_to_mp4(frames: np.ndarray | Sequence[np.ndarray], fps: int) -> bytes:
    """Encode frames as H.264/yuv420p MP4 with ``+faststart``; odd sizes are edge-padded to even."""
    return _encode(frames, fps, "mp4", codec="libx264", quality=_CRF_QUALITY,
                   output_params=["-movflags", "+faststart"])


def frames_to_webm(frames: np.ndarray | Sequence[np.ndarray], fps: int) -> bytes:
    """Encode frames as VP9/yuv420p WebM at constant quality; odd sizes are edge-padded to even."""
    return _encode(frames, fps, "webm", codec="libvpx-vp9", quality=None, output_params=_VP9_PARAMS)


def encode_video(frames: np.ndarray | Sequence[np.ndarray], fps: int, fmt: VideoFormat) -> bytes:
    """Frames as MP4 (H.264), WebM (VP9) or a looping GIF."""
    encoders = {"mp4": frames_to_mp4, "webm": frames_to_webm, "gif": frames_to_gif}
    if fmt not in encoders:
        raise ValueError(f"format must be one of {sorted(encoders)}, got {fmt!r}")
    return encoders[fmt](frames, fps)


def _encode(frames: np.ndarray | Sequence[np.ndarray], fps: int, suffix: str, **writer_args) -> bytes:
    """Frames through the bundled ffmpeg into a file of that suffix's container."""
    _check_fps(fps)
    arr = _pad_even(as_uint8(frames))
    _, h, w, _ = arr.shape
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"out.{suffix}"
        writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=1,
                                             ffmpeg_log_level="error", **writer_args)
        writer.send(None)
        for frame in arr:
            writer.send(frame)
        writer.close()
        return path.read_bytes()


def frames_to_gif(frames: np.ndarray | Sequence[np.ndarray], fps: int, max_side: int | None = None) -> bytes:
    """Encode frames as a looping animated GIF, optionally downscaled so the longest side <= max_side.

    Pillow merges consecutive identical frames (summing their durations).
    """
    _check_fps(fps)
    images = [Image.fromarray(f) for f in as_uint8(frames)]
    if max_side is not None:
        _check_max_side(max_side)
        for img in images:
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / fps),
        loop=0,
    )
    return buf.getvalue()


@contextmanager
def _reader(data: bytes, name: str = "data") -> Iterator[tuple[dict, Iterator[bytes]]]:
    """Yield (meta, raw rgb24 frame iterator) for MP4 bytes, decoded by the bundled ffmpeg.

    ``name`` is the caller's argument name, used in error messages.
    """
    if not data:
        raise ValueError(f"{name} must be non-empty MP4 bytes")
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.mp4"
        path.write_bytes(data)
        gen = imageio_ffmpeg.read_frames(str(path))
        try:
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration) as exc:
            gen.close()
            raise ValueError(f"{name} is not a decodable video: {exc}") from exc
        try:
            yield meta, gen
        finally:
            gen.close()


def read_mp4(data: bytes) -> VideoInfo:
    """Decode MP4 bytes and report frame count (counted while decoding), size and fps."""
    with _reader(data) as (meta, gen):
        count = sum(1 for _ in gen)
    width, height = meta["size"]
    return VideoInfo(num_frames=count, width=width, height=height, fps=float(meta["fps"]))


def decode_mp4(data: bytes) -> np.ndarray:
    """Decode MP4 bytes into uint8 frames (F,H,W,3)."""
    with _reader(data) as (meta, gen):
        width, height = meta["size"]
        frames = [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in gen]
    if not frames:
        raise ValueError("data contains no video frames")
    return np.stack(frames)


def decode_frames(data: bytes, content_type: str) -> np.ndarray:
    """uint8 RGB frames (F,H,W,3) of an image (every frame of a GIF) or a video (MP4, WebM) of `content_type`."""
    if content_type.startswith("video/"):
        return decode_mp4(data)
    try:
        image = Image.open(io.BytesIO(data))
        frames = [np.asarray(image.convert("RGB"))]
        while getattr(image, "n_frames", 1) > len(frames):
            image.seek(len(frames))
            frames.append(np.asarray(image.convert("RGB")))
    except (UnidentifiedImageError, OSError, EOFError) as exc:
        raise ValueError(f"data is not a decodable {content_type}: {exc}") from exc
    return np.stack(frames)


def _letterbox(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``frame`` to fit (width, height), keeping aspect ratio, centred on black."""
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    import cv2

    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y : y + nh, x : x + nw] = resized
    return out


def concat_mp4(clips: list[bytes], fps: int) -> bytes:
    """Join MP4 clips into one MP4; later clips are letterboxed to the first clip's size."""
    _check_fps(fps)
    if not clips:
        raise ValueError("clips must not be empty")
    decoded = [decode_mp4(c) for c in clips]
    _, height, width, _ = decoded[0].shape
    frames = [_letterbox(f, width, height) for clip in decoded for f in clip]
    return frames_to_mp4(np.stack(frames), fps)


def encode_png(image: np.ndarray | Image.Image) -> bytes:
    """Encode a PIL image or an (H,W,3) uint8/float[0,1] array as PNG."""
    if not isinstance(image, Image.Image):
        if np.ndim(image) != 3:
            raise ValueError(f"image must have shape (H,W,3), got {np.shape(image)}")
        image = Image.fromarray(as_uint8(image)[0])
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def encode_image(png: bytes, fmt: ImageFormat, quality: int | None = None) -> bytes:
    """PNG bytes re-encoded as PNG (returned as they are), JPEG or WebP at `quality` (1-100, default 90)."""
    if fmt == "png":
        return png
    if fmt not in ("jpeg", "webp"):
        raise ValueError(f"format must be png, jpeg or webp, got {fmt!r}")
    image = _open_png(png).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt.upper(), quality=quality or DEFAULT_QUALITY)
    return buf.getvalue()


def _open_png(data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ValueError("data is not a valid image") from exc
    if img.format != "PNG":
        raise ValueError(f"data must be PNG, got {img.format}")
    return img


def decode_png_size(data: bytes) -> tuple[int, int]:
    """Return (width, height) of PNG bytes, reading only the header."""
    return _open_png(data).size


def thumbnail(image_png: bytes, max_side: int = 256) -> bytes:
    """Downscale a PNG (RGB out) so its longest side is <= max_side; never upscales."""
    _check_max_side(max_side)
    img = _open_png(image_png).convert("RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return encode_png(img)


def video_thumbnail(mp4: bytes, max_side: int = 256) -> bytes:
    """Return the first frame of an MP4 as a PNG thumbnail with longest side <= max_side."""
    _check_max_side(max_side)
    with _reader(mp4, "mp4") as (meta, gen):
        raw = next(gen, None)
    if raw is None:
        raise ValueError("mp4 contains no video frames")
    width, height = meta["size"]
    img = Image.fromarray(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return encode_png(img)
