"""SVD family on tiny random weights: shapes, per-request seeds, media encoding, validation, full-size config."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel

import helpers
from config.families import Source, SVDArgs
from models.steps import Steps
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
def svd() -> SVD:
    return SVD(SVDArgs(source=Source.TINY, device="cpu"))


@pytest.fixture
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("pipeline called")

    monkeypatch.setattr(StableVideoDiffusionPipeline, "__call__", fail)


def test_run_returns_float_frames_per_request(svd: SVD) -> None:
    frames = svd.run([request(1, image=0), request(2, image=1)])
    assert frames.shape == (2, FRAMES, 64, 64, 3)
    assert frames.min() >= 0.0 and frames.max() <= 1.0


def test_batch_equals_single_calls(svd: SVD) -> None:
    batch = [request(1, image=0), request(2, image=1)]
    together = svd.run(batch)
    for index, single in enumerate(batch):
        np.testing.assert_allclose(together[index], svd.run([single])[0], atol=1e-4, rtol=0)


def test_different_seeds_differ(svd: SVD) -> None:
    frames = svd.run([request(1), request(2)])
    assert np.abs(frames[0] - frames[1]).max() > 1e-3


def test_animate_encodes_mp4_and_gif_in_request_order(svd: SVD) -> None:
    requests = [request(1, gif=True), request(2, num_frames=FRAMES + 2), request(3, image=1)]
    results = svd.animate(requests)
    assert [r.seed for r in results] == [1, 2, 3]
    for req, result in zip(requests, results, strict=True):
        info = read_mp4(result.video)
        assert (info.num_frames, info.width, info.height) == (req.num_frames, req.width, req.height)
        assert result.num_frames == req.num_frames and result.fps == req.fps
        assert result.metadata.model == "svd" and result.metadata.source == "tiny"
    assert results[0].gif.startswith(b"GIF89a")
    assert results[1].gif is None
    assert results[0].metadata.batch_size == 2 and results[1].metadata.batch_size == 1


def test_on_step_reports_every_step(svd: SVD) -> None:
    calls: list[tuple[int, int]] = []
    svd.run([request(1)], Steps(on_step=lambda b: calls.append((b.done, b.total))))
    assert calls == [(1, 2), (2, 2)]


@pytest.mark.parametrize("field", ["width", "height"])
def test_bad_size_fails_before_compute(svd: SVD, no_compute: None, field: str) -> None:
    assert svd.size_multiple == 16
    bad = request(1, **{field: 72})
    with pytest.raises(ValueError, match=field):
        svd.animate([request(2), bad])


def test_run_rejects_mixed_group(svd: SVD, no_compute: None) -> None:
    with pytest.raises(ValueError, match="requests"):
        svd.run([request(1), request(2, fps=8)])


def test_random_unet_has_svd_xt_size() -> None:
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**ARCHITECTURES[Source.RANDOM]["unet"])
    count = sum(p.numel() for p in unet.parameters())
    assert count == pytest.approx(1.52e9, rel=0.02)


def test_random_build_puts_every_tensor_on_the_target_device():
    """AlphaBlender's mix_factor comes from the legacy torch.Tensor([...]) constructor, which ignores the device
    context: build() must still place it (on a GPU it stayed on the CPU and every SVD call failed)."""
    from models.loading import build

    unet = build(lambda: UNetSpatioTemporalConditionModel(**ARCHITECTURES[Source.TINY]["unet"]), "meta",
                 torch.float32)
    assert {t.device.type for t in [*unet.parameters(), *unet.buffers()]} == {"meta"}
