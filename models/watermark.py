"""Montage's invisible watermark: a fixed 48-bit message in the frequency domain of a frame's pixels (the
`invisible-watermark` library that diffusers' SDXL pipeline marks its images with; its DWT-DCT-SVD method, which
survives a JPEG re-encode that plain DWT-DCT does not), and its detector.

The detector reads a frame as it is and scaled up 2× (a copy resized to half still carries the mark at twice its
size). A frame smaller than the library's 256×256 pixels carries no mark (`MIN_PIXELS`)."""
from __future__ import annotations

import numpy as np

from models.types import WATERMARK_BITS, Detection

MESSAGE = 0b1011_0010_0100_1101_0110_1110_0001_1001_1100_0101_0011_1010  # "Montage made this", 48 bits
BITS = [int(bit) for bit in f"{MESSAGE:0{WATERMARK_BITS}b}"]
MIN_PIXELS = 256 * 256
MATCH_AT = 42  # bits of 48 that must match: by chance about 1 in 2.6e7 on a frame with no mark
METHOD = "dwtDctSvd"
STRENGTH = {"scales": [0, 48, 0]}  # per YUV channel: U only, a third above the library's 36 (survives JPEG q85)
SCALES = (1, 2)  # the detector's tries: as it is, then enlarged 2× (undoes a 0.5× resize)


def carries(width: int, height: int) -> bool:
    """Whether a frame of this size is large enough to carry the mark."""
    return width * height >= MIN_PIXELS


def mark_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames (F, H, W, 3) with the mark in each; frames too small are returned as they are."""
    _, height, width, _ = frames.shape
    if not carries(width, height):
        return frames
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", BITS)
    marked = [encoder.encode(np.ascontiguousarray(frame[:, :, ::-1]), METHOD, **STRENGTH)[:, :, ::-1]
              for frame in frames]
    return np.ascontiguousarray(np.clip(np.stack(marked), 0, 255).astype(np.uint8))


def detect(frame: np.ndarray) -> Detection:
    """Reads the mark from one uint8 RGB frame (H, W, 3), at each of `SCALES` until found: the best match."""
    import cv2

    height, width = frame.shape[:2]
    best = Detection(found=False)
    for scale in SCALES:
        if not carries(width * scale, height * scale):
            continue
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        if scale != 1:
            bgr = cv2.resize(bgr, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)
        matched = _matched(bgr)
        if best.bits_matched is None or matched > best.bits_matched:
            best = Detection(found=matched >= MATCH_AT, bits_matched=matched)
        if best.found:
            break
    return best


def _matched(bgr: np.ndarray) -> int:
    from imwatermark import WatermarkDecoder

    decoded = WatermarkDecoder("bits", len(BITS)).decode(bgr, METHOD, **STRENGTH)
    return sum(int(a) == b for a, b in zip(decoded, BITS, strict=True))
