"""Image to image on SDXL and FLUX (tiny, CPU): the source's latents noised to the strength's step, then the steps
left; strength 0 is the source's VAE round trip, strength 1 text to image; progress counts the steps run; a job
checkpointed midway resumes to the uninterrupted result; an inpainting keeps the source outside its mask."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import helpers
from config.families import FluxArgs, SDXLArgs, Source
from models.flux import Flux
from models.errors import InvalidRequest
from models.images import decode_rgb, mask_png
from models.sdxl import SDXL
from models.steps import Boundary, Steps, StepState
from models.types import ImageRequest, start_step

STEPS = 4
SOURCE = helpers.png(64, 64, 7)


@pytest.fixture(scope="module")
def families() -> dict:
    return dict(sdxl=SDXL(SDXLArgs(source=Source.TINY, device="cpu")),
                flux=Flux(FluxArgs(source=Source.TINY, device="cpu")))


def _requests(strength: float | None) -> list[ImageRequest]:
    source = {} if strength is None else dict(image=SOURCE, strength=strength)
    return [ImageRequest(prompt="a red kite", width=64, height=64, steps=STEPS, guidance=5.0, seed=seed, **source)
            for seed in (1, 2)]


def _round_trip(family, pipe) -> np.ndarray:
    """The source encoded and decoded by the family's VAE (its latent mean), as an (H, W, 3) float image."""
    pixels = pipe.image_processor.preprocess(decode_rgb(SOURCE))
    with torch.inference_mode():
        decoded = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mode()).sample
    return pipe.image_processor.postprocess(decoded, output_type="np")[0]


def test_the_start_step_runs_steps_times_strength() -> None:
    assert [start_step(10, s) for s in (0.0, 0.25, 0.5, 0.99, 1.0)] == [10, 8, 5, 1, 0]


@pytest.mark.parametrize("name", ["sdxl", "flux"])
def test_strength_0_is_the_round_trip_and_1_is_text_to_image(families: dict, name: str) -> None:
    family = families[name]
    pipe = family.plain if name == "sdxl" else family.text_to_image
    steps: list[tuple[int, int, int]] = []
    kept = family.run(_requests(0.0), Steps(on_step=lambda b: steps.append(b.progress)))
    assert steps == []  # no step runs: the source's latents are decoded
    for image in kept:
        np.testing.assert_allclose(image, _round_trip(family, pipe), atol=1e-4, rtol=0)  # scaled and unscaled
    np.testing.assert_allclose(family.run(_requests(1.0)), family.run(_requests(None)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["sdxl", "flux"])
def test_half_strength_runs_half_the_steps_and_resumes_from_a_checkpoint(families: dict, name: str) -> None:
    family = families[name]
    requests = _requests(0.5)
    seen: list[tuple[int, int, tuple[int, int, int]]] = []
    saved: list[bytes] = []

    def keep(boundary: Boundary) -> None:
        seen.append((boundary.done, boundary.total, boundary.progress))
        if boundary.done == 3:
            saved.extend(state.to_bytes() for state in boundary.states())

    images = family.run(requests, Steps(on_step=keep))
    # Steps 3 and 4 of the schedule's 4 run; progress says 1 and 2 of 2.
    assert seen == [(3, STEPS, (1, 2, 0)), (4, STEPS, (2, 2, 0))]
    assert images.shape == (2, 64, 64, 3)
    assert np.abs(images[0] - images[1]).mean() > 1e-3  # each seed its own noise
    # Neither the source's round trip nor text to image.
    assert np.abs(images - family.run(_requests(0.0))).mean() > 1e-3
    assert np.abs(images - family.run(_requests(None))).mean() > 1e-3
    # A retry resumes the checkpoint (not the source): the same images, progress still counted from the start step.
    resumed_seen: list[tuple[int, int, int]] = []
    resumed = family.run(requests, Steps(on_step=lambda b: resumed_seen.append(b.progress),
                                         resume=[StepState.from_bytes(data) for data in saved]))
    assert resumed_seen == [(2, 2, 1)]
    np.testing.assert_allclose(resumed, images, atol=1e-5, rtol=0)


def _inpaintings(mask: bytes) -> list[ImageRequest]:
    return [ImageRequest(**r.model_dump() | {"mask": mask}) for r in _requests(1.0)]


@pytest.mark.parametrize("name", ["sdxl", "flux"])
def test_an_inpainting_repaints_the_mask_and_keeps_every_other_pixel(families: dict, name: str) -> None:
    family = families[name]
    wanted = np.zeros((64, 64), bool)
    wanted[8:40, 16:48] = True
    requests = _inpaintings(mask_png(wanted))
    saved: list[bytes] = []

    def keep(boundary: Boundary) -> None:
        if boundary.done == 2:
            saved.extend(state.to_bytes() for state in boundary.states())

    images = family.run(requests, Steps(on_step=keep))
    source = np.asarray(decode_rgb(SOURCE), np.float32) / 255.0
    for image in images:  # the source's own pixels outside the mask (the tiny VAE's round trip is off by up to 1.0)
        np.testing.assert_array_equal(image[~wanted], source[~wanted])
        assert np.abs(image[wanted] - source[wanted]).mean() > 0.05
    resumed = family.run(requests, Steps(resume=[StepState.from_bytes(data) for data in saved]))
    np.testing.assert_allclose(resumed, images, atol=1e-5, rtol=0)


def test_a_mask_of_another_size_or_without_white_is_refused() -> None:
    with pytest.raises(ValidationError, match="mask is 32x64"):
        _inpaintings(mask_png(np.ones((64, 32), bool)))
    with pytest.raises(ValidationError, match="nothing to repaint"):
        _inpaintings(mask_png(np.zeros((64, 64), bool)))


def test_flux_honours_a_negative_prompt_only_with_true_cfg(families: dict) -> None:
    flux = families["flux"]
    plain = ImageRequest(prompt="a red kite", width=64, height=64, steps=2, guidance=3.5, seed=4)
    negative = plain.model_copy(update={"negative_prompt": "blurry, grey"})
    baseline = flux.run([plain])
    np.testing.assert_array_equal(flux.run([negative]), baseline)  # ignored without true CFG
    guided = flux.run([negative.model_copy(update={"true_cfg_scale": 4.0})])
    assert np.abs(guided - baseline).mean() > 1e-3
    assert flux.fuse_key(negative.model_copy(update={"true_cfg_scale": 4.0})) is None
    with pytest.raises(InvalidRequest, match="true_cfg_scale: .*flux only"):
        families["sdxl"].generate([negative.model_copy(update={"true_cfg_scale": 4.0})])


def test_sdxl_reads_prompt_weights_only_when_asked(families: dict) -> None:
    sdxl = families["sdxl"]

    def request(prompt: str, weighting: bool = True) -> ImageRequest:
        return ImageRequest(prompt=prompt, width=64, height=64, steps=2, guidance=5.0, seed=4, negative_prompt="blurry",
                            prompt_weighting=weighting)

    heavy, even = request("a (fox:1.6) in the snow"), request("a (fox:1.0) in the snow")
    batch = sdxl.run([heavy, even])
    assert np.abs(batch[0] - batch[1]).mean() > 1e-3  # the weight is read
    np.testing.assert_allclose(batch[1], sdxl.run([even])[0], atol=1e-4, rtol=0)  # each prompt its own embedding
    plain = sdxl.run([request("a fox in the snow")])[0]
    as_text = sdxl.run([request("a fox:1 . 0 in the snow")])[0]  # how compel reads "(fox:1.0)" without the syntax
    # weight 1 is (nearly: compel's pooled embedding sees the raw text) the plain word, unlike its text reading
    assert np.abs(batch[1] - plain).mean() < np.abs(as_text - plain).mean() / 2
    with pytest.raises(InvalidRequest, match="negative_prompt: prompt_weighting: parentheses nest deeper than 4"):
        sdxl.validate(request("a fox").model_copy(update={"negative_prompt": "(" * 200 + "fox" + ")" * 200}))
    unread = sdxl.run([request("a (fox:1.0) in the snow", weighting=False)])[0]
    assert np.abs(unread - batch[1]).mean() > 1e-3  # without weighting the parentheses and number are text
    with pytest.raises(InvalidRequest, match="prompt_weighting"):
        families["flux"].generate([ImageRequest(prompt="a (fox:1.3)", width=64, height=64, steps=2, guidance=3.5,
                                                seed=4, prompt_weighting=True)])
