import io

import pytest
from PIL import Image
from pydantic import ValidationError

from helpers import png
from models.images import decode_rgb, inspect_image
from models.types import Control, ImageRequest, PromptRequest, StoryboardRequest, VideoRequest

BASE = dict(prompt="a lighthouse", width=64, height=64, steps=2, guidance=5.0, seed=1)


def error_fields(exc: ValidationError) -> set[str]:
    return {str(err["loc"][0]) if err["loc"] else err["msg"] for err in exc.errors()}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (dict(width=60), "width"),
        (dict(height=1000 + 4), "height"),
        (dict(steps=0), "steps"),
        (dict(steps=10_000), "steps"),
        (dict(prompt="   "), "prompt"),
        (dict(prompt="x" * 5000), "prompt"),
        (dict(seed=-1), "seed"),
        (dict(guidance=-1.0), "guidance"),
    ],
)
def test_bad_image_arguments_name_the_field(change, field):
    with pytest.raises(ValueError) as caught:
        ImageRequest(**{**BASE, **change})
    assert isinstance(caught.value, ValidationError)
    assert field in error_fields(caught.value)
    assert field in str(caught.value)


def test_valid_request_is_normalised():
    request = ImageRequest(**{**BASE, "prompt": "  a lighthouse  "})
    assert request.prompt == "a lighthouse"


def test_cmyk_image_is_rejected_as_wrong_mode():
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 16)).save(buffer, "JPEG")
    with pytest.raises(ValueError, match="image.*mode CMYK"):
        VideoRequest(**BASE, image=buffer.getvalue(), num_frames=8, fps=7)


def test_sixteen_bit_image_is_rejected():
    buffer = io.BytesIO()
    Image.new("I;16", (16, 16)).save(buffer, "PNG")
    with pytest.raises(ValueError, match="mode"):
        inspect_image(buffer.getvalue())


def test_not_an_image_is_rejected():
    with pytest.raises(ValueError, match="controls.image: not a decodable image"):
        Control(type="canny", image=b"<svg></svg>")


def test_pixel_limit_is_checked_from_the_header():
    with pytest.raises(ValueError, match="exceeds 1024 pixels"):
        inspect_image(png(64, 64), max_pixels=1024)


def test_decode_rgb_converts_grey_and_palette():
    assert decode_rgb(png(16, 8, mode="L")).mode == "RGB"
    assert decode_rgb(png(16, 8, mode="P")).size == (16, 8)


def test_duplicate_control_types_are_rejected():
    control = Control(type="canny", image=png(16, 16))
    with pytest.raises(ValueError, match="controls"):
        ImageRequest(**BASE, controls=(control, control))


def test_unknown_prompt_mode_is_rejected():
    with pytest.raises(ValidationError) as caught:
        PromptRequest(prompt="x", mode="baroque")
    assert "mode" in error_fields(caught.value)


@pytest.mark.parametrize("kwargs", [dict(), dict(theme="a", script="b"), dict(theme=" ")])
def test_storyboard_needs_exactly_one_of_theme_or_script(kwargs):
    with pytest.raises(ValueError, match="theme"):
        StoryboardRequest(**kwargs)


@pytest.mark.parametrize(("source", "multiple", "max_pixels", "expected"), [
    ((128, 128), 2, 512 * 512, (128, 128)),  # served as it is
    ((100, 60), 16, 512 * 512, (96, 64)),  # rounded to the grid
    ((1024, 768), 16, 512 * 512, (576, 432)),  # over the pixels: the largest 4:3 within them
    ((768, 1024), 16, 512 * 512, (432, 576)),
    ((5000, 3000), 32, None, (2048, 1216)),  # over a side: 2048 wide
    ((1, 5000), 16, 512 * 512, (16, 2048)),  # the narrowest side is one grid cell
])
def test_fit_size_keeps_the_source_within_the_familys_limits(source, multiple, max_pixels, expected):
    from models.grid import fit_size

    width, height = fit_size(*source, multiple, max_pixels)
    assert (width, height) == expected
    assert width * height <= (max_pixels or 2048**2) and max(width, height) <= 2048


def test_a_side_over_the_maximum_names_the_maximum_not_the_multiple():
    with pytest.raises(ValidationError) as caught:
        ImageRequest(**BASE | {"width": 4097})
    assert caught.value.errors()[0]["type"] == "less_than_equal"


def test_an_adapter_named_twice_is_refused_by_one_rule_everywhere():
    from models.errors import InvalidRequest
    from models.types import Lora, check_distinct

    loras = [Lora(id="ink"), Lora(id="ink", scale=0.5)]
    with pytest.raises(InvalidRequest) as refused:
        check_distinct(loras, "style.loras")
    assert str(refused.value) == "style.loras: each adapter may appear once"
    with pytest.raises(ValidationError, match="loras: each adapter may appear once"):
        ImageRequest(**BASE, loras=tuple(loras))


def test_one_limit_bounds_the_adapters_of_a_request_a_style_and_a_familys_args():
    from composition.schemas.images import ImageGeneration
    from composition.schemas.styles import Style
    from config.families import MAX_LORAS, AdapterPolicy, GenerationDefaults
    from models.types import Lora

    loras = [Lora(id=f"a{index}") for index in range(MAX_LORAS + 1)]
    for build in (lambda: ImageRequest(**BASE, loras=tuple(loras)), lambda: ImageGeneration(prompt="x", loras=loras),
                  lambda: Style(prompt="x", loras=loras), lambda: AdapterPolicy(max_per_request=MAX_LORAS + 1),
                  lambda: GenerationDefaults(width=64, height=64, steps=1, guidance=1.0, max_loras=MAX_LORAS + 1)):
        with pytest.raises(ValidationError):
            build()
    assert len(ImageGeneration(prompt="x", loras=loras[:MAX_LORAS]).loras) == MAX_LORAS
