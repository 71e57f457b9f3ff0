import io

import numpy as np
import pytest
from diffusers import FluxKontextPipeline, FluxPipeline, FluxTransformer2DModel
from family_contract import FamilyContract
from PIL import Image

from config.families import FluxArgs
from helpers import png
from models import flux, tokenizers
from models.types import EditRequest, ImageRequest

SIZE = dict(width=64, height=64, steps=2, guidance=3.5)


@pytest.fixture(scope="module")
def model():
    return flux.Flux(FluxArgs(max_sequence_length=64))


def request(seed: int, **change) -> ImageRequest:
    return ImageRequest(**{"prompt": f"a lighthouse {seed}", "seed": seed, **SIZE, **change})


class TestContract(FamilyContract):
    """Text to image; the edit's batch below."""
    request = staticmethod(request)
    pipelines = (FluxPipeline, FluxKontextPipeline)
    architectures = flux.ARCHITECTURES
    full_size = {"transformer": (FluxTransformer2DModel, 11.9)}
    shape = (64, 64, 3)
    mixed = {"steps": 3}
    batch_size = 4


def test_edit_batch_of_different_images_equals_single_calls(model):
    requests = [EditRequest(prompt="make it night", image=png(seed=i), seed=i, **SIZE) for i in range(3)]
    batched = model.run_edit(requests)
    assert batched.shape == (3, 64, 64, 3)
    assert np.abs(batched - np.concatenate([model.run_edit([r]) for r in requests])).max() <= 1e-4


def test_edit_depends_on_the_source_image(model):
    white, black = (solid(value) for value in (255, 0))
    a, b = (model.run_edit([EditRequest(prompt="make it night", image=image, seed=0, **SIZE)]) for image in (white, black))
    assert np.abs(a - b).mean() > 1e-4


def solid(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (value,) * 3).save(buffer, "PNG")
    return buffer.getvalue()


def test_edit_and_text_to_image_share_encoders_and_vae(model):
    assert model.kontext.vae is model.text_to_image.vae
    assert model.kontext.text_encoder_2 is model.text_to_image.text_encoder_2


def test_generate_returns_pngs_with_metadata(model):
    results = model.generate([ImageRequest(prompt="a fox", seed=5, **{**SIZE, "width": 32})])
    assert results[0].png.startswith(b"\x89PNG") and results[0].width == 32
    assert results[0].metadata.batch_size == 1 and results[0].metadata.model == "flux"


def test_controls_are_refused_for_flux(model):
    from models.types import Control

    request = ImageRequest(prompt="a fox", seed=1, controls=(Control(type="canny", image=png()),), **SIZE)
    with pytest.raises(ValueError, match="controls"):
        model.generate([request])


def test_concurrent_text_to_image_and_edit_equal_sequential_calls(model):
    """The Flux deployment runs its text-to-image and edit batch queues in two threads: the pipelines share the
    transformer, encoders and VAE, and must not share the scheduler (it holds one call's timesteps); their shared
    tokenizers take one call at a time (tests/models/test_tokenizers.py)."""
    from concurrent.futures import ThreadPoolExecutor

    t2i = [ImageRequest(prompt="a harbour at dawn", seed=3, width=128, height=128, steps=30, guidance=3.5)]
    edit = [EditRequest(prompt="make it night", image=png(seed=2), seed=4, width=96, height=96, steps=20,
                        guidance=3.5)]
    sequential = model.run(t2i), model.run_edit(edit)
    for _ in range(2):
        with ThreadPoolExecutor(2) as pool:
            concurrent = pool.submit(model.run, t2i), pool.submit(model.run_edit, edit)
            for alone, together in zip(sequential, (f.result() for f in concurrent), strict=True):
                assert np.abs(alone - together).max() <= 1e-5
    assert model.kontext.scheduler is not model.text_to_image.scheduler
    assert {type(pipe.tokenizer_2) for pipe in (model.text_to_image, model.kontext)} == {tokenizers.OneAtATime}
