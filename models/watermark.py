"""Montage's invisible watermark: a fixed 48-bit message in the frequency domain of a frame's pixels, and its
detector. The method is the `invisible-watermark` library's DWT-DCT-SVD (the library diffusers' SDXL pipeline marks
its images with; this method survives a JPEG re-encode that plain DWT-DCT does not): the U channel's Haar LL band in
4×4 blocks, each block's largest DCT singular value moved to the middle of the bin its bit names. It is computed here
for all blocks at once (the library loops over them in Python: ~1 s per 1024² image) and in floating point, with
the detail bands put back where they came from (the library stores the result in 8 bits and swaps two detail bands,
which costs image quality, not the mark): the library's decoder reads this mark and this detector reads the
library's (tests/models/test_media.py).

The detector reads a frame as it is and scaled up 2× (a copy resized to half still carries the mark at twice its
size). A frame smaller than the library's 256×256 pixels carries no mark (`MIN_PIXELS`)."""
from __future__ import annotations

import numpy as np

from models.types import WATERMARK_BITS, Detection

MESSAGE = 0b1011_0010_0100_1101_0110_1110_0001_1001_1100_0101_0011_1010  # "Montage made this", 48 bits
BITS = np.array([int(bit) for bit in f"{MESSAGE:0{WATERMARK_BITS}b}"])
MIN_PIXELS = 256 * 256
MATCH_AT = 42  # bits of 48 that must match: by chance about 1 in 2.6e7 on a frame with no mark
SCALE = 48.0  # the U channel's bin width: a third above the library's 36 (survives JPEG q85)
BLOCK = 4
SCALES = (1, 2)  # the detector's tries: as it is, then enlarged 2× (undoes a 0.5× resize)
# OpenCV's 8-bit RGB → YUV (the library's colour space): U = 0.492 (B − Y) + 128; a change of U alone moves G and B
_Y = np.array([0.299, 0.587, 0.114])
_DU_TO_RGB = np.array([0.0, -0.395, 2.032])
_DCT = np.array([[np.sqrt((1 if k == 0 else 2) / BLOCK) * np.cos(np.pi * (2 * n + 1) * k / (2 * BLOCK))
                  for n in range(BLOCK)] for k in range(BLOCK)])  # orthonormal DCT-II, as cv2.dct


def carries(width: int, height: int) -> bool:
    """Whether a frame of this size is large enough to carry the mark."""
    return width * height >= MIN_PIXELS


def mark_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames (F, H, W, 3) with the mark in each; frames too small are returned as they are."""
    _, height, width, _ = frames.shape
    if not carries(width, height):
        return frames
    return np.stack([_marked(frame) for frame in frames])


def detect(frame: np.ndarray) -> Detection:
    """Reads the mark from one uint8 RGB frame (H, W, 3), at each of `SCALES` until found: the best match."""
    import cv2

    height, width = frame.shape[:2]
    best = Detection(found=False)
    for scale in SCALES:
        if not carries(width * scale, height * scale):
            continue
        rgb = frame if scale == 1 else cv2.resize(frame, (width * scale, height * scale),
                                                  interpolation=cv2.INTER_CUBIC)
        matched = int((_read(rgb) == BITS).sum())
        if best.bits_matched is None or matched > best.bits_matched:
            best = Detection(found=matched >= MATCH_AT, bits_matched=matched)
        if best.found:
            break
    return best


def _u(rgb: np.ndarray) -> np.ndarray:
    """The U channel (float) of the frame's whole 4×4 blocks."""
    height, width = rgb.shape[0] // BLOCK * BLOCK, rgb.shape[1] // BLOCK * BLOCK
    pixels = rgb[:height, :width].astype(np.float64)
    return 0.492 * (pixels[..., 2] - pixels @ _Y) + 128.0


def _blocks(band: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The LL band's whole 4×4 blocks (N, 4, 4), row by row as the library numbers them, and their grid."""
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    blocks = band[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).swapaxes(1, 2)
    return blocks.reshape(-1, BLOCK, BLOCK), (rows, cols)


def _marked(rgb: np.ndarray) -> np.ndarray:
    import pywt

    u = _u(rgb)
    low, details = pywt.dwt2(u, "haar")
    blocks, (rows, cols) = _blocks(low)
    left, singular, right = np.linalg.svd(_DCT @ blocks @ _DCT.T)
    bits = BITS[np.arange(len(blocks)) % len(BITS)]
    singular[:, 0] = (singular[:, 0] // SCALE + 0.25 + 0.5 * bits) * SCALE
    moved = _DCT.T @ ((left * singular[:, None, :]) @ right) @ _DCT
    low = low.copy()
    low[:rows * BLOCK, :cols * BLOCK] = moved.reshape(rows, cols, BLOCK, BLOCK).swapaxes(1, 2).reshape(
        rows * BLOCK, cols * BLOCK)
    change = pywt.idwt2((low, details), "haar") - u
    out = rgb.astype(np.float64)
    out[:change.shape[0], :change.shape[1]] += change[..., None] * _DU_TO_RGB
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _read(rgb: np.ndarray) -> np.ndarray:
    """The message's bits as the frame carries them: each bit the majority of its blocks' bins."""
    import pywt

    low, _ = pywt.dwt2(_u(rgb), "haar")
    blocks, _ = _blocks(low)
    largest = np.linalg.svd(_DCT @ blocks @ _DCT.T, compute_uv=False)[:, 0]
    votes = (largest % SCALE > SCALE * 0.5).astype(np.float64)
    index = np.arange(len(votes)) % len(BITS)
    return (np.bincount(index, votes, len(BITS)) / np.bincount(index, minlength=len(BITS)) * 255 > 127).astype(int)
