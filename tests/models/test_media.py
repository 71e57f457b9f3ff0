import io
import re
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from models import media


def _frames(n: int, h: int, w: int) -> np.ndarray:
    """Smooth moving gradient, float in [0,1], so every frame differs and compresses well."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.float32)
    for i in range(n):
        out[i, ..., 0] = x / max(w - 1, 1)
        out[i, ..., 1] = y / max(h - 1, 1)
        out[i, ..., 2] = i / max(n - 1, 1)
    return out


def _stream(mp4: bytes, tmp_path: Path) -> tuple[str, str]:
    """(codec, pix_fmt) of the video stream, parsed from `ffmpeg -i` stderr."""
    path = tmp_path / "probe.mp4"
    path.write_bytes(mp4)
    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    match = re.search(r"Video: (\w+)[^,]*, (\w+)", proc.stderr)
    assert match, proc.stderr
    return match.group(1), match.group(2)


def _solid_png(w: int, h: int) -> bytes:
    return media.encode_png(np.full((h, w, 3), 128, np.uint8))


# Padding rule: odd dimensions are edge-padded by exactly 1 px to the next even number; content is not scaled.
@pytest.mark.parametrize(("w", "h"), [(64, 48), (33, 17), (17, 13), (8, 8)])
def test_mp4_size_count_codec(w: int, h: int, tmp_path: Path) -> None:
    frames = _frames(10, h, w)
    mp4 = media.frames_to_mp4(frames, fps=8)

    info = media.read_mp4(mp4)
    assert (info.num_frames, info.width, info.height) == (10, w + w % 2, h + h % 2)
    assert info.fps == pytest.approx(8.0)
    assert _stream(mp4, tmp_path) == ("h264", "yuv420p")

    decoded = media.decode_mp4(mp4)
    assert decoded.shape == (10, h + h % 2, w + w % 2, 3)
    # Compare luma (chroma is subsampled in yuv420p); stretching to the padded size would give ~5-8.
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    error = np.abs(decoded[:, :h, :w] @ luma - media.as_uint8(frames) @ luma).mean()
    assert error < 3, "content must be preserved (padded, not rescaled)"


def test_mp4_faststart_moov_before_mdat() -> None:
    mp4 = media.frames_to_mp4(_frames(8, 32, 32), fps=12)
    assert 0 < mp4.find(b"moov") < mp4.find(b"mdat")


def test_as_uint8_converts_and_validates() -> None:
    single = media.as_uint8(np.array([[[0.0, 0.5, 1.0]]]))
    assert single.dtype == np.uint8 and single.shape == (1, 1, 1, 3)
    assert single[0, 0, 0].tolist() == [0, 128, 255]
    frames = np.arange(96, dtype=np.uint8).reshape(2, 4, 4, 3)
    assert np.array_equal(media.as_uint8(frames), frames)
    for bad in ([], np.zeros((2, 4, 4)), np.zeros((2, 4, 4, 4)), np.zeros((2, 4, 4, 3), np.int32)):
        with pytest.raises(ValueError, match="frames"):
            media.as_uint8(bad)


@pytest.mark.parametrize("fps", [0, -1, 121])
def test_invalid_fps(fps: int) -> None:
    with pytest.raises(ValueError, match="fps"):
        media.frames_to_mp4(_frames(2, 8, 8), fps)
    with pytest.raises(ValueError, match="fps"):
        media.frames_to_gif(_frames(2, 8, 8), fps)


def test_gif_header_frames_loop_duration() -> None:
    gif = media.frames_to_gif(_frames(8, 40, 60), fps=10)
    assert gif[:6] == b"GIF89a"
    with Image.open(io.BytesIO(gif)) as img:
        assert img.n_frames == 8
        assert img.size == (60, 40)
        assert img.info["loop"] == 0
        assert img.info["duration"] == 100


def test_gif_max_side_downscales() -> None:
    gif = media.frames_to_gif(_frames(4, 40, 60), fps=5, max_side=30)
    with Image.open(io.BytesIO(gif)) as img:
        assert img.size == (30, 20)
        assert img.n_frames == 4


def test_concat_sums_frames_and_letterboxes() -> None:
    first = media.frames_to_mp4(np.zeros((8, 32, 32, 3), np.uint8), fps=8)
    second = media.frames_to_mp4(np.full((6, 24, 48, 3), 255, np.uint8), fps=8)
    joined = media.concat_mp4([first, second], fps=8)

    info = media.read_mp4(joined)
    assert (info.num_frames, info.width, info.height) == (14, 32, 32)
    tail = media.decode_mp4(joined)[8:].astype(np.int32)
    # 48x24 scaled to 32x16 and centred: black bars of 8 px above and below.
    assert tail[:, :6].mean() < 30 and tail[:, -6:].mean() < 30
    assert tail[:, 10:22].mean() > 220


def test_concat_rejects_empty() -> None:
    with pytest.raises(ValueError, match="clips"):
        media.concat_mp4([], fps=8)


def test_read_mp4_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="data"):
        media.read_mp4(b"not a video")
    with pytest.raises(ValueError, match="data"):
        media.decode_mp4(b"")


def test_thumbnail_limits_longest_side() -> None:
    thumb = media.thumbnail(_solid_png(300, 200), max_side=64)
    assert thumb[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = media.decode_png_size(thumb)
    assert max(w, h) == 64 and h == pytest.approx(43, abs=1)
    assert media.decode_png_size(media.thumbnail(_solid_png(20, 10), max_side=64)) == (20, 10)


def test_video_thumbnail_is_first_frame() -> None:
    frames = np.zeros((6, 48, 64, 3), np.uint8)
    frames[0, ..., 0] = 255  # first frame red, the rest black
    png = media.video_thumbnail(media.frames_to_mp4(frames, fps=8), max_side=32)
    img = Image.open(io.BytesIO(png))
    assert max(img.size) <= 32
    r, g, b = np.asarray(img.convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_png_helpers() -> None:
    arr = np.random.default_rng(0).random((7, 9, 3))
    png = media.encode_png(arr)
    assert media.decode_png_size(png) == (9, 7)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), media.as_uint8(arr)[0])
    assert media.decode_png_size(media.encode_png(Image.new("RGB", (5, 3)))) == (5, 3)
    with pytest.raises(ValueError, match="image"):
        media.encode_png(np.zeros((2, 7, 9, 3)))
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, format="JPEG")
    with pytest.raises(ValueError, match="data"):
        media.decode_png_size(jpeg.getvalue())


@pytest.mark.parametrize(("w", "h"), [(64, 48), (33, 17)])
def test_webm_is_vp9_with_every_frame(w: int, h: int, tmp_path: Path) -> None:
    frames = _frames(6, h, w)
    webm = media.encode_video(frames, 8, "webm")
    assert webm[:4] == b"\x1aE\xdf\xa3"  # EBML: Matroska / WebM
    assert _stream(webm, tmp_path) == ("vp9", "yuv420p")
    decoded = media.decode_mp4(webm)
    assert decoded.shape == (6, h + h % 2, w + w % 2, 3)
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(decoded[:, :h, :w] @ luma - media.as_uint8(frames) @ luma).mean() < 4


def test_encode_video_gif_and_unknown_format() -> None:
    gif = Image.open(io.BytesIO(media.encode_video(_frames(5, 16, 16), 10, "gif")))
    assert (gif.format, gif.n_frames) == ("GIF", 5)
    with pytest.raises(ValueError, match="format"):
        media.encode_video(_frames(2, 8, 8), 8, "avi")


def test_encode_image_keeps_the_pixels_in_another_format() -> None:
    source = (_frames(1, 48, 64)[0] * 255).astype(np.uint8)
    png = media.encode_png(source)
    assert media.encode_image(png, "png") is png
    for fmt, pil_name in (("jpeg", "JPEG"), ("webp", "WEBP")):
        encoded = media.encode_image(png, fmt)
        image = Image.open(io.BytesIO(encoded))
        assert (image.format, image.size, image.mode) == (pil_name, (64, 48), "RGB")
        assert np.abs(np.asarray(image, np.float32) - source).mean() < 3
        assert media.encode_image(png, fmt) == encoded  # deterministic: one rendition per recipe
        assert len(media.encode_image(png, fmt, quality=10)) < len(encoded)
    with pytest.raises(ValueError, match="format"):
        media.encode_image(png, "bmp")


def test_the_watermark_survives_mp4_and_frames_too_small_carry_none():
    """Every frame of a clip is marked (`VideoRequest.watermark`) and read back after H.264; the same frames unmarked,
    and a frame under 256² pixels, are not found. (A GIF's 256-colour palette keeps it on some content, not on these
    smooth gradients.)"""
    from models.watermark import detect, mark_frames

    ramp = np.linspace(0, 255, 256, dtype=np.float32)
    frames = np.stack([np.stack([np.add.outer(ramp, ramp * k) / 2 % 256, np.outer(ramp, ramp) / 256 % 256,
                                 np.full((256, 256), 40.0 * k)], -1) for k in range(1, 4)]).astype(np.uint8)
    marked = mark_frames(frames)
    assert marked.shape == frames.shape and marked.dtype == np.uint8 and not np.array_equal(marked, frames)
    assert all(detect(frame).found for frame in media.decode_frames(media.frames_to_mp4(marked, 8), "video/mp4"))
    assert not any(detect(frame).found for frame in media.decode_mp4(media.frames_to_mp4(frames, 8)))
    small = frames[:, :64, :64]
    assert np.array_equal(mark_frames(small), small) and detect(small[0]).bits_matched is None


def test_the_watermark_is_the_invisible_watermark_librarys_mark_at_a_fraction_of_its_distortion():
    """The vectorised mark and the library's DWT-DCT-SVD (`imwatermark`, strength 48 on U) read each other's bits all
    48, and ours changes the pixels less (floating point, detail bands in place)."""
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    from models.watermark import BITS, SCALE, detect, mark_frames

    rng = np.random.default_rng(5)
    ramp = np.linspace(0, 1, 320)
    frame = (np.stack([np.outer(ramp, ramp), np.outer(1 - ramp, ramp), np.outer(ramp, 1 - ramp)], -1) * 200
             + rng.integers(0, 40, (320, 320, 3))).astype(np.uint8)
    ours = mark_frames(frame[None])[0]
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", BITS.tolist())
    scales = {"scales": [0, SCALE, 0]}
    theirs = np.clip(encoder.encode(np.ascontiguousarray(frame[:, :, ::-1]), "dwtDctSvd", **scales)[:, :, ::-1], 0,
                     255).astype(np.uint8)
    read = WatermarkDecoder("bits", len(BITS)).decode(np.ascontiguousarray(ours[:, :, ::-1]), "dwtDctSvd", **scales)
    assert [int(bit) for bit in read] == BITS.tolist()
    assert detect(theirs).bits_matched == len(BITS) and not detect(frame).found

    def error(marked: np.ndarray) -> float:
        return float(np.mean((marked.astype(np.float64) - frame) ** 2))

    assert error(ours) < error(theirs) / 2


def test_ffmpeg_starts_without_running_the_replicas_fork_handlers() -> None:
    """A replica's ffmpeg starts by exec without fork handlers: imageio-ffmpeg's default `preexec_fn` forks the whole
    replica, and gRPC's handlers (Ray's threads call into gRPC) aborted that child now and then, an encode failing
    with no file written. Here a fork handler that kills its child stands in for gRPC's."""
    script = ("import os, numpy as np; from models import media; "
              "os.register_at_fork(after_in_child=lambda: os._exit(3)); "
              "clip = np.zeros((3, 16, 16, 3), np.uint8); "
              "print(len(media.decode_mp4(media.frames_to_mp4(clip, fps=8))))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "3"), done.stderr[-2000:]
