"""SVD family on tiny random weights: shapes, per-request seeds, media encoding, validation, full-size config."""
from __future__ import annotations

import pytest
import torch
from diffusers import StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel
from family_contract import FamilyContract

import helpers
from config.families import Source, SVDArgs
from models.media import read_mp4
from models.svd import ARCHITECTURES, SVD
from models.types import VideoRequest

FRAMES = 4


def png(seed: int) -> bytes:
    return helpers.png(40, 48, seed)


def request(seed: int, image: int = 0, **overrides) -> VideoRequest:
    fields = dict(image=png(image), width=64, height=64, steps=2, guidance=3.0, seed=seed, num_frames=FRAMES, fps=7)
    return VideoRequest(**{**fields, **overrides})


@pytest.fixture(scope="module")
def model() -> SVD:
    return SVD(SVDArgs(source=Source.TINY, device="cpu"))


class TestContract(FamilyContract):
    request = staticmethod(request)
    pipelines = (StableVideoDiffusionPipeline,)
    architectures = ARCHITECTURES
    full_size = {"unet": (UNetSpatioTemporalConditionModel, 1.52)}
    shape = (FRAMES, 64, 64, 3)
    operation = "animate"
    mixed = {"fps": 8}

    def batch(self) -> list[VideoRequest]:
        return [request(1, image=0), request(2, image=1)]


def test_animate_encodes_mp4_and_gif_in_request_order(model: SVD) -> None:
    requests = [request(1, gif=True), request(2, num_frames=FRAMES + 2), request(3, image=1)]
    results = model.animate(requests)
    assert [r.seed for r in results] == [1, 2, 3]
    for req, result in zip(requests, results, strict=True):
        info = read_mp4(result.video)
        assert (info.num_frames, info.width, info.height) == (req.num_frames, req.width, req.height)
        assert result.num_frames == req.num_frames and result.fps == req.fps
        assert result.metadata.model == "svd" and result.metadata.source == "tiny"
    assert results[0].gif.startswith(b"GIF89a")
    assert results[1].gif is None
    assert results[0].metadata.batch_size == 2 and results[1].metadata.batch_size == 1


def test_random_build_puts_every_tensor_on_the_target_device():
    """AlphaBlender's mix_factor comes from the legacy torch.Tensor([...]) constructor, which ignores the device
    context: build() must still place it (on a GPU it stayed on the CPU and every SVD call failed)."""
    from models.loading import build

    unet = build(lambda: UNetSpatioTemporalConditionModel(**ARCHITECTURES[Source.TINY]["unet"]), "meta",
                 torch.float32)
    assert {t.device.type for t in [*unet.parameters(), *unet.buffers()]} == {"meta"}
