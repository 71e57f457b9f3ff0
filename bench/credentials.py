"""The cost and robustness of content credentials on the CPU: `python -m bench.credentials [--images N]`.

In this process, no Ray: (1) watermark and C2PA signing time for a 1024² PNG and an 81-frame 832×480 clip (MP4),
and the bytes a manifest adds; (2) what credentials add to a 512² image (watermark + sign; its PNG is encoded with
or without them) against a tiny SDXL request at 512² (2 steps, one torch thread; medians of 5, interleaved; the
issue's goal: ≤ 5 %), and the watermark's PSNR on that image; (3) the watermark's detection rate
on N tiny-SDXL images at 256² (the smallest that carries it) as they are, after a JPEG quality-85 re-encode and
after a 0.5× resize (read back at 2×), and its false positives on N images Montage did not make (photograph-like
synthetic scenes: gradients, shapes, texture, noise; no dataset can be downloaded here). Prints one table and writes
var/bench/credentials.json. Nothing asserts a figure."""
from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench.inprocess import tiny_sdxl
from bench.stack import ROOT
from composition.credentials.chain import load_chain
from composition.credentials.recipe import Recipe
from composition.credentials.signing import ContentSigner
from config.composition import CredentialsArgs
from models.media import encode_png, frames_to_mp4
from models.types import ImageRequest
from models.watermark import detect, mark_frames

OUT = ROOT / "credentials.json"
CLIP = (81, 480, 832)  # Wan 2.1 at 480p: frames, height, width
REPEAT = 5


def scene(seed: int, size: int) -> np.ndarray:
    """A photograph-like image not made by Montage: a sky gradient, shapes, texture and sensor noise."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    base = (top * (1 - ramp) + bottom * ramp) * np.ones((size, size, 3))
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 12))):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(size // 16, size // 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 3))))
    noisy = np.asarray(image).astype(np.float32) + rng.normal(0, rng.uniform(1, 8), (size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def timed(fn, repeat: int = 3) -> float:
    """The best of `repeat` runs, in ms."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - started) * 1000.0)
    return best


def jpeg85(frame: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=85)
    return np.asarray(Image.open(buffer).convert("RGB"))


def half(frame: np.ndarray) -> np.ndarray:
    image = Image.fromarray(frame)
    return np.asarray(image.resize((image.width // 2, image.height // 2), Image.Resampling.BICUBIC))


def library_mark(rgb: np.ndarray) -> np.ndarray:
    """The `invisible-watermark` library's own DWT-DCT-SVD embedding of Montage's message (what models/watermark.py
    vectorises), for the before/after."""
    from imwatermark import WatermarkEncoder

    from models.watermark import BITS, SCALE

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", BITS.tolist())
    return encoder.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDctSvd", scales=[0, SCALE, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=50)
    n = parser.parse_args().images
    signer = ContentSigner(load_chain(CredentialsArgs(), Path(tempfile.mkdtemp()) / "credentials"))
    recipe = Recipe(operation="generate", family="sdxl", model="bench", model_source="tiny", device="cpu", seed=1,
                    steps=2, width=1024, height=1024, guidance=5.0, format="png", watermark=True)
    image = scene(0, 1024)
    png = encode_png(image)
    figures: dict[str, float] = {}
    figures["image_watermark_ms"] = timed(lambda: mark_frames(image[None]))
    figures["image_watermark_library_ms"] = timed(lambda: library_mark(image), repeat=1)  # the same mark, looped
    figures["image_sign_ms"] = timed(lambda: signer.sign(png, "image/png", recipe))
    figures["image_manifest_bytes"] = len(signer.sign(png, "image/png", recipe)) - len(png)
    figures["image_overhead_pct"] = 100.0 * figures["image_manifest_bytes"] / len(png)

    frames, height, width = CLIP
    clip = np.stack([np.roll(scene(1, max(height, width))[:height, :width], i * 4, axis=1) for i in range(frames)])
    mp4 = frames_to_mp4(clip, 16)
    video_recipe = recipe.model_copy(update={"operation": "animate", "family": "wan", "format": "mp4",
                                             "num_frames": frames, "fps": 16, "width": width, "height": height})
    figures["clip_watermark_ms"] = timed(lambda: mark_frames(clip), repeat=1)
    figures["clip_sign_ms"] = timed(lambda: signer.sign(mp4, "video/mp4", video_recipe))
    figures["clip_manifest_bytes"] = len(signer.sign(mp4, "video/mp4", video_recipe)) - len(mp4)
    figures["clip_overhead_pct"] = 100.0 * figures["clip_manifest_bytes"] / len(mp4)

    with tiny_sdxl(threads=1) as model:  # one torch thread, as a replica runs
        request = dict(prompt="a harbour at dawn", width=512, height=512, steps=2, guidance=5.0)
        model.generate([ImageRequest(seed=0, **request)])  # warm
        frame = scene(2, 512)[None]
        marked = mark_frames(frame)
        png = encode_png(marked[0])  # the request encodes its PNG with or without credentials
        error = np.mean((marked.astype(np.float64) - frame) ** 2)
        figures["watermark_psnr_db"] = float(10 * np.log10(255.0 ** 2 / error))
        generate, credentials = [], []
        for seed in range(REPEAT):  # interleaved, so load on this shared machine hits both alike
            generate.append(timed(lambda: model.generate([ImageRequest(seed=seed, **request)]), repeat=1))
            credentials.append(timed(lambda: (mark_frames(frame), signer.sign(png, "image/png", recipe)), repeat=1))
        figures["tiny_512_request_ms"] = float(np.median(generate))
        figures["sign_watermark_512_ms"] = float(np.median(credentials))
        figures["ratio_to_tiny_512_pct"] = 100.0 * figures["sign_watermark_512_ms"] / figures["tiny_512_request_ms"]
        small = dict(prompt="a harbour at dawn", width=256, height=256, steps=2, guidance=5.0, watermark=True)
        made = [np.asarray(Image.open(io.BytesIO(result.png)).convert("RGB")) for result in model.generate(
            [ImageRequest(seed=seed, **small) for seed in range(n)])]
    for name, attack in (("clean", lambda f: f), ("jpeg85", jpeg85), ("half", half)):
        figures[f"detected_{name}_pct"] = 100.0 * sum(detect(attack(f)).found for f in made) / n
    figures["false_positives"] = sum(detect(scene(1000 + seed, 256 + 64 * (seed % 4))).found for seed in range(n))
    figures["images"] = n

    width_ = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width_}}  {value:,.1f}" if isinstance(value, float) else f"{key:<{width_}}  {value}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
