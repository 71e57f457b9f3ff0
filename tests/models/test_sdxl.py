import numpy as np
import pytest
from diffusers import (ControlNetUnionModel, StableDiffusionXLControlNetUnionPipeline, StableDiffusionXLPipeline,
                       UNet2DConditionModel)
from family_contract import FamilyContract

from config.families import SDXLArgs
from helpers import png
from models import sdxl
from models.media import decode_png_size
from models.types import Control, ImageRequest


@pytest.fixture(scope="module")
def model():
    return sdxl.SDXL(SDXLArgs())


def request(seed: int, **change) -> ImageRequest:
    return ImageRequest(**{**dict(prompt=f"a red fox {seed}", width=64, height=64, steps=2, guidance=5.0,
                                  seed=seed), **change})


def canny(scale: float = 1.0, seed: int = 0) -> Control:
    return Control(type="canny", image=png(64, 64, seed), scale=scale)


class TestContract(FamilyContract):
    request = staticmethod(request)
    pipelines = (StableDiffusionXLPipeline, StableDiffusionXLControlNetUnionPipeline)
    architectures = sdxl.ARCHITECTURES
    full_size = {"unet": (UNet2DConditionModel, 2.57), "controlnet": (ControlNetUnionModel, 1.26)}
    shape = (64, 64, 3)
    mixed = {"steps": 3}
    batch_size = 4


def test_control_guided_batch_equals_single_calls(model):
    requests = [request(seed, controls=(canny(seed=seed), Control(type="depth", image=png(seed=9), scale=0.5)))
                for seed in range(2)]
    batched = model.run(requests)
    singles = np.concatenate([model.run([r]) for r in requests])
    assert np.abs(batched - singles).max() <= 1e-4


def test_controls_run_the_union_controlnet_and_plain_requests_skip_it(model):
    calls = []
    hook = model.union.controlnet.register_forward_hook(lambda module, args, kwargs: calls.append(1))
    try:
        model.run([request(3)])
        assert calls == []
        model.run([request(3, controls=(canny(),))])
        assert len(calls) == 2  # once per denoising step
    finally:
        hook.remove()


def test_mixed_batch_is_split_into_groups_in_request_order(model):
    requests = [request(0), request(1, width=32), request(2), request(3, controls=(canny(),))]
    results = model.generate(requests)
    assert [r.seed for r in results] == [0, 1, 2, 3]
    assert [r.metadata.batch_size for r in results] == [2, 1, 2, 1]
    assert decode_png_size(results[1].png) == (32, 64)
    assert results[3].metadata.extra["controls"] == ["canny"]
    assert results[0].metadata.model == "sdxl" and results[0].metadata.source == "tiny"


def test_pretrained_source_requires_both_ids():
    with pytest.raises(ValueError, match="model_id"):
        SDXLArgs(source="pretrained")
    with pytest.raises(ValueError, match="controlnet_id"):
        SDXLArgs(source="pretrained", model_id="stabilityai/stable-diffusion-xl-base-1.0")


def test_plain_and_union_pipelines_keep_the_serving_dtype_and_own_their_schedulers():
    """from_pipe casts the modules it shares to float32 unless told the dtype (on a GPU: fp32 SDXL, and a dtype
    error on every ControlNet request); a scheduler holds one call's timesteps, so none is shared."""
    import torch

    model = sdxl.SDXL(SDXLArgs(device="cpu", dtype="bfloat16"))
    assert model.plain.unet.dtype == model.union.controlnet.dtype == torch.bfloat16
    assert model.plain.text_encoder_2.dtype == torch.bfloat16
    assert model.plain.unet is model.union.unet and model.plain.scheduler is not model.union.scheduler
