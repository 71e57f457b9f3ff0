from typing import get_args

import numpy as np
import pytest
from PIL import Image

from models import conditioning as cond

KINDS = get_args(cond.ControlType)


def _square() -> Image.Image:
    """White 40x40 square (rows/cols 20..59) on a black 80x80 canvas."""
    arr = np.zeros((80, 80, 3), np.uint8)
    arr[20:60, 20:60] = 255
    return Image.fromarray(arr)


def _three_regions() -> Image.Image:
    arr = np.zeros((48, 60, 3), np.uint8)
    arr[:, :20] = (200, 30, 30)
    arr[:, 20:40] = (30, 200, 30)
    arr[:, 40:] = (30, 30, 200)
    return Image.fromarray(arr)


def _scene() -> Image.Image:
    rng = np.random.default_rng(0)
    arr = np.zeros((47, 61, 3), np.float32)
    arr[:] = np.linspace(220, 120, 47)[:, None, None]
    arr[30:] = (60, 140, 50)
    arr[10:35, 15:35] = (200, 50, 40)
    return Image.fromarray(np.clip(arr + rng.normal(0, 6, arr.shape), 0, 255).astype(np.uint8))


def _dark(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L")) < 128


@pytest.mark.parametrize("kind", KINDS)
def test_maps_are_rgb_and_same_size(kind: str) -> None:
    for image in (_scene(), _scene().convert("L"), _square()):
        out = cond.control_map(kind, image)
        assert out.mode == "RGB" and out.size == image.size


def test_control_map_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match="type"):
        cond.control_map("normal", _square())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image"):
        cond.canny(np.zeros((8, 8, 3), np.uint8))  # type: ignore[arg-type]


def test_canny_edges_on_border_only() -> None:
    edges = np.asarray(cond.canny(_square()))
    assert set(np.unique(edges)) == {0, 255}
    assert (edges[..., 0] == edges[..., 1]).all() and (edges[..., 1] == edges[..., 2]).all()
    on = edges[..., 0] > 0
    ring = np.zeros_like(on)
    ring[17:63, 17:63] = True
    ring[23:57, 23:57] = False
    assert on[ring].sum() > 4 * 30, "edges along all four sides"
    assert not on[~ring].any(), "no edges in the flat interior or background"
    for side in (on[17:23, 25:55], on[57:63, 25:55], on[25:55, 17:23], on[25:55, 57:63]):
        assert side.any()


def test_canny_validates_thresholds() -> None:
    with pytest.raises(ValueError, match="low"):
        cond.canny(_square(), low=200, high=100)


def test_segmentation_separates_flat_regions() -> None:
    seg = np.asarray(cond.segmentation(_three_regions()))
    colours = {tuple(c) for c in seg.reshape(-1, 3)}
    assert len(colours) >= 3
    assert colours <= {tuple(c) for c in cond.ADE20K_PALETTE.tolist()}
    # each flat region is painted with a single colour, and the three differ
    regions = [seg[:, 2:18], seg[:, 22:38], seg[:, 42:58]]
    assert all(len(np.unique(r.reshape(-1, 3), axis=0)) == 1 for r in regions)
    assert len({tuple(r[0, 0]) for r in regions}) == 3
    assert np.array_equal(seg, np.asarray(cond.segmentation(_three_regions())))


def test_segmentation_validates_segments() -> None:
    with pytest.raises(ValueError, match="segments"):
        cond.segmentation(_square(), segments=1)


def test_depth_deterministic_grey_and_varied() -> None:
    first = np.asarray(cond.depth(_scene()))
    assert np.array_equal(first, np.asarray(cond.depth(_scene())))
    assert (first[..., 0] == first[..., 1]).all() and (first[..., 1] == first[..., 2]).all()
    assert first.min() == 0 and first.max() == 255
    flat = np.asarray(cond.depth(Image.new("RGB", (32, 32), (90, 90, 90))))[..., 0].astype(int)
    assert flat[-4:].mean() > flat[:4].mean() + 100, "vertical prior: bottom of the frame is nearer"


def test_scribble_thick_nonempty_and_unlike_canny() -> None:
    image = _square()
    strokes = np.asarray(cond.scribble(image))[..., 0]
    edges = np.asarray(cond.canny(image))[..., 0]
    assert set(np.unique(strokes)) == {0, 255}
    assert (strokes > 0).sum() > 1.5 * (edges > 0).sum(), "strokes are thicker than canny edges"
    assert not np.array_equal(strokes, edges)
    assert strokes[35:45, 35:45].max() == 0 and strokes[:5, :5].max() == 0


def test_scribble_keeps_long_strokes_and_drops_small_blobs() -> None:
    arr = np.zeros((96, 96, 3), np.uint8)
    arr[45:48, 30:90] = 255  # a long thin line
    for y, x in [(10, 10), (10, 80), (80, 10), (80, 80)]:
        arr[y : y + 5, x : x + 5] = 255  # small dots: only short edge fragments
    arr[np.random.default_rng(1).random((96, 96)) > 0.995] = 255  # single-pixel noise
    strokes = np.asarray(cond.scribble(Image.fromarray(arr)))[..., 0] > 0
    ys, xs = np.nonzero(strokes)
    assert strokes.sum() > 100
    assert ys.min() >= 38 and ys.max() <= 54 and xs.min() >= 24 and xs.max() <= 96


def test_font_path_exists() -> None:
    path = cond.font_path()
    assert path.is_file() and path.suffix.lower() in {".otf", ".ttf", ".ttc"}


@pytest.mark.parametrize("text", ["Montage", "愛", "ありがとう", "사랑", "hello\n世界"])
def test_render_text_has_centred_glyphs(text: str) -> None:
    img = cond.render_text(text, 256, 192)
    assert img.mode == "RGB" and img.size == (256, 192)
    dark = _dark(img)
    assert dark.sum() > 0.03 * dark.size, "glyph pixels present"
    ys, xs = np.nonzero(dark)
    w, h = xs.max() - xs.min(), ys.max() - ys.min()
    assert w > 0.6 * 256 or h > 0.6 * 192, "text fills most of the canvas"
    assert abs((xs.max() + xs.min()) / 2 - 128) < 10 and abs((ys.max() + ys.min()) / 2 - 96) < 16
    corner = np.asarray(img)[:3, :3]
    assert (corner == 255).all(), "white background"


def test_render_text_distinguishes_words_and_characters() -> None:
    assert not np.array_equal(np.asarray(cond.render_text("cat")), np.asarray(cond.render_text("dog")))
    assert not np.array_equal(np.asarray(cond.render_text("愛")), np.asarray(cond.render_text("恋")))
    assert not np.array_equal(np.asarray(cond.render_text("사랑")), np.asarray(cond.render_text("감사")))


def test_missing_glyphs_detected() -> None:
    assert cond.missing_glyphs("Hello 愛 ありがとう 사랑") == []
    assert cond.missing_glyphs("a\U0001f600b\u0e01") == ["\U0001f600", "\u0e01"]  # emoji, Thai
    with pytest.raises(ValueError, match="text"):
        cond.render_text("smile \U0001f600")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_render_text_rejects_blank(text: str) -> None:
    with pytest.raises(ValueError, match="text"):
        cond.render_text(text)


def test_render_text_validates_canvas() -> None:
    with pytest.raises(ValueError, match="width"):
        cond.render_text("a", width=0)
    with pytest.raises(ValueError, match="height"):
        cond.render_text("a", height=100_000)
