"""Wan 2.1 I2V family on tiny random weights: one image per call, per-request seeds, media, validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
from family_contract import FamilyContract

import helpers
from config.families import Source, WanArgs
from models.media import read_mp4
from models.types import VideoRequest

from models.wan import ARCHITECTURES, Wan

FRAMES = 5


def png(seed: int) -> bytes:
    return helpers.png(40, 48, seed)


def request(seed: int, image: int = 0, **overrides) -> VideoRequest:
    fields = dict(image=png(image), prompt="a cat", width=64, height=64, steps=2, guidance=5.0, seed=seed,
                  num_frames=FRAMES, fps=16)
    return VideoRequest(**{**fields, **overrides})


@pytest.fixture(scope="module")
def model() -> Wan:
    return Wan(WanArgs(source=Source.TINY, device="cpu"))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batch size of every pipeline call."""
    sizes: list[int] = []
    original = WanImageToVideoPipeline.__call__

    def spy(self, *args, **kwargs):
        sizes.append(len(kwargs["prompt_embeds"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WanImageToVideoPipeline, "__call__", spy)
    return sizes


class TestContract(FamilyContract):
    """One image per pipeline call: a batch shares its image (prompts of different lengths)."""
    request = staticmethod(request)
    pipelines = (WanImageToVideoPipeline,)
    architectures = ARCHITECTURES
    full_size = {"transformer": (WanTransformer3DModel, 16.4)}
    shape = (FRAMES, 64, 64, 3)
    operation = "animate"
    mixed = {"image": 1}
    bad_fields = {"width": 72, "height": 40, "num_frames": 6}

    def batch(self) -> list[VideoRequest]:
        return [request(1, prompt="a cat"), request(2, prompt="a dog running on the beach")]


def test_mixed_images_run_in_separate_calls(model: Wan, calls: list[int]) -> None:
    requests = [request(1, image=0), request(2, image=1), request(3, image=0, gif=True)]
    results = model.animate(requests)
    assert sorted(calls) == [1, 2]
    assert [r.seed for r in results] == [1, 2, 3]
    assert [r.metadata.batch_size for r in results] == [2, 1, 2]
    for req, result in zip(requests, results, strict=True):
        info = read_mp4(result.video)
        assert (info.num_frames, info.width, info.height) == (req.num_frames, req.width, req.height)
        assert result.metadata.model == "wan" and result.metadata.source == "tiny"
    assert results[2].gif.startswith(b"GIF89a")
    assert results[0].gif is None


def test_text_encoder_offload_keeps_the_encoder_on_cpu_and_renders():
    from config.families import WanArgs
    from models.wan import Wan

    requests = [VideoRequest(image=png(3), prompt=p, width=64, height=64, steps=2, guidance=5.0, seed=s,
                             num_frames=5, fps=8) for s, p in ((1, "a fox"), (2, "a fox running"))]
    offloaded = Wan(WanArgs(text_encoder_offload=True))
    assert offloaded.pipe.text_encoder.device.type == "cpu"
    frames = offloaded.run(requests)
    assert offloaded.pipe.text_encoder.device.type == "cpu"
    assert frames.shape == (2, 5, 64, 64, 3) and np.isfinite(frames).all()


def test_offloaded_prompts_reuse_one_negative_embedding_and_match_the_pipelines_encoding():
    from models.wan import MAX_SEQUENCE_LENGTH

    wan = Wan(WanArgs(text_encoder_offload=True))
    requests = [VideoRequest(image=png(3), prompt=p, width=64, height=64, steps=2, guidance=5.0, seed=1,
                             num_frames=5, fps=8) for p in ("a fox", "a fox running")]
    first, second = wan.prompts(requests), wan.prompts(requests[:1])
    assert first["negative_prompt_embeds"].shape == first["prompt_embeds"].shape
    assert second["negative_prompt_embeds"].data_ptr() == first["negative_prompt_embeds"].data_ptr()
    positive, negative = wan.pipe.encode_prompt(prompt=[r.prompt for r in requests], negative_prompt=["", ""],
                                                max_sequence_length=MAX_SEQUENCE_LENGTH, device=torch.device("cpu"))
    assert torch.equal(first["prompt_embeds"], positive) and torch.equal(first["negative_prompt_embeds"], negative)


def test_fast_random_init_fills_every_parameter_with_seeded_finite_values():
    from transformers import UMT5Config, UMT5EncoderModel

    from models.loading import build

    def encoder(seed: int):
        return build(lambda: UMT5EncoderModel(UMT5Config(**ARCHITECTURES[Source.TINY]["text"])), "cpu",
                     torch.float32, seed, fast_init=True)

    a, b, c = encoder(0), encoder(0), encoder(1)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.isfinite(pa).all() and pa.std() > 0.01 and torch.equal(pa, pb) and not torch.equal(pa, pc)
