"""Step caches (`acceleration: step_cache`) and fp8 (`quantize`) on tiny models (CPU): the cache skips steps and says
how many, never touches an uncached request's pixels (before, beside or after a cached one), keys its fusion, and a
cached job resumes; bad settings name their field. Quality on trained weights is not judged here (BENCHMARKS.md)."""
from __future__ import annotations

import threading
import time
from functools import partial

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import helpers
from config.acceleration import StepCacheArgs
from config.families import FluxArgs, LLMArgs, SDXLArgs, SVDArgs, WanArgs
from deployments.scheduler import StepScheduler
from models.acceleration import _INSTALLED, CacheUse, _members, installed
from config.specs import no_step_cache
from models.errors import InvalidRequest
from models.flux import Flux
from models.fusion import DenoiserCall
from models.quantize import quantizable, quantize_denoiser, relative_error
from models.steps import Boundary, Steps, StepState
from models.svd import SVD
from models.types import EditRequest, ImageRequest, VideoRequest
from models.wan import Wan

STEPS = 6
PERMISSIVE = StepCacheArgs(threshold=10.0)  # random weights: every step after the first reuses the cache
SIZE = dict(width=64, height=64, steps=STEPS)
CACHED = {"acceleration": "step_cache"}


@pytest.fixture(scope="module")
def flux() -> Flux:
    return Flux(FluxArgs(device="cpu", max_sequence_length=64, step_cache=PERMISSIVE))


@pytest.fixture(scope="module")
def wan() -> Wan:
    return Wan(WanArgs(device="cpu", step_cache=PERMISSIVE))


def _image(seed: int = 1, **update) -> ImageRequest:
    return ImageRequest(prompt="a red kite", guidance=3.5, seed=seed, **SIZE).model_copy(update=update)


def _video(seed: int = 1, **update) -> VideoRequest:
    return VideoRequest(image=helpers.png(64, 64, 5), prompt="a cat", guidance=5.0, seed=seed, num_frames=5, fps=8,
                        **SIZE).model_copy(update=update)


def test_a_cached_request_skips_steps_and_says_how_many_an_uncached_one_none(flux: Flux, wan: Wan) -> None:
    edit = EditRequest(prompt="add snow", image=helpers.png(64, 64, 3), guidance=3.5, seed=1, **SIZE)
    for run, request in ((flux.generate, _image()), (flux.edit, edit), (wan.animate, _video())):
        plain, cached = (run([r])[0] for r in (request, request.model_copy(update=CACHED)))
        assert plain.metadata.steps_skipped == 0
        # The first step computes every block (nothing is cached yet); the others reuse the cache.
        assert cached.metadata.steps_skipped == STEPS - 1
        assert cached.metadata.batch_size == 1


def test_a_strict_threshold_skips_nothing_and_is_exact() -> None:
    strict = Flux(FluxArgs(device="cpu", max_sequence_length=64, step_cache=StepCacheArgs(threshold=1e-9)))
    plain, cached = (strict.generate([r])[0] for r in (_image(), _image(**CACHED)))
    assert cached.metadata.steps_skipped == 0 and cached.png == plain.png


def test_an_uncached_request_after_a_cached_one_is_bit_identical_to_a_fresh_pipelines(flux: Flux) -> None:
    flux.generate([_image(**CACHED)])
    assert installed(flux.text_to_image.transformer)  # the hooks stay on the shared transformer
    fresh = Flux(FluxArgs(device="cpu", max_sequence_length=64))
    requests = [_image(seed) for seed in (1, 2)]
    np.testing.assert_array_equal(flux.run(requests), fresh.run(requests))
    assert not installed(fresh.text_to_image.transformer)


def test_with_compile_the_hooks_run_around_the_compiled_blocks_and_uncached_pixels_stay() -> None:
    """Regional compile compiled each block's whole call; a hook inside a full graph breaks it. The cache's install
    compiles the blocks' forwards instead, which the hooks wrap."""
    torch._dynamo.reset()
    try:
        compiled = Flux(FluxArgs(device="cpu", max_sequence_length=64, compile=True, step_cache=PERMISSIVE))
        request = _image(steps=4)
        plain = compiled.generate([request])[0]
        assert compiled.generate([request.model_copy(update=CACHED)])[0].metadata.steps_skipped == 3
        assert compiled.generate([request])[0].png == plain.png
    finally:
        torch._dynamo.reset()


def test_requests_differing_only_in_acceleration_run_apart(flux: Flux) -> None:
    plain, cached = _image(), _image(**CACHED)
    assert flux.fuse_key(plain) != flux.fuse_key(cached) and flux.group_key(plain) != flux.group_key(cached)
    results = flux.generate([plain, cached])
    assert [r.metadata.batch_size for r in results] == [1, 1]
    assert [r.metadata.steps_skipped for r in results] == [0, STEPS - 1]
    assert results[0].png == flux.generate([plain])[0].png


def test_a_cached_and_an_uncached_denoiser_call_never_share_a_forward() -> None:
    module, x = torch.nn.Linear(4, 4), torch.zeros(1, 4)
    plain, cached, other = (DenoiserCall(module, (x,), {}, cache)
                            for cache in (None, CacheUse(PERMISSIVE), CacheUse(PERMISSIVE)))
    assert plain.signature != cached.signature and cached.signature == other.signature


def _fused_pair(family, run, a, b, cache_a: CacheUse | None, cache_b: CacheUse | None) -> dict:
    """a runs; b joins it at a's step 2 (test_steps' continuous batching); each job's output and ticket."""
    scheduler = StepScheduler(batch_budget=8)
    tickets = {user: scheduler.ticket("normal", user, family.fuse_key(request))
               for user, request in (("a", a), ("b", b))}
    outputs: dict[str, np.ndarray] = {}

    def job(user, request, cache, on_step) -> None:
        ticket = tickets[user]

        def boundary(step: Boundary) -> None:
            on_step(step)
            scheduler.boundary(ticket)

        with scheduler.running(ticket):
            outputs[user] = run([request], Steps(on_step=boundary, denoise=partial(scheduler.fused, ticket),
                                                 cache=cache))

    joining = threading.Thread(target=job, args=("b", b, cache_b, lambda step: None))

    def start_b(step: Boundary) -> None:
        if step.done == 2:
            joining.start()
            while not scheduler.waiting():
                time.sleep(0.001)

    job("a", a, cache_a, start_b)
    joining.join()
    return dict(outputs=outputs, fused={user: ticket.fused_requests for user, ticket in tickets.items()})


def test_cached_jobs_of_one_setting_fuse_and_a_join_starts_a_fresh_cache(flux: Flux) -> None:
    a, b = _image(1, **CACHED), _image(2, prompt="a blue boat", **CACHED)
    caches = CacheUse(PERMISSIVE), CacheUse(PERMISSIVE)
    found = _fused_pair(flux, flux.run, a, b, *caches)
    assert found["fused"] == {"a": 2, "b": 2}
    assert all(out.shape == (1, 64, 64, 3) and np.isfinite(out).all() for out in found["outputs"].values())
    # Each change of membership starts a context computed in full. a: step 1 computes, 2 reuses; b joins at a's 3,
    # which computes; 4 to 6 reuse. b: its 1 (a's 3) computes, 2 to 4 reuse; a left, so its 5 computes, 6 reuses.
    assert [cache.steps_skipped for cache in caches] == [STEPS - 2, STEPS - 2]
    states = _INSTALLED[flux.text_to_image.transformer][1]._state_cache
    assert {frozenset(_members(name)) for name in states} == {frozenset({caches[1].token})}  # stale ones dropped
    for cache in caches:
        cache.release()
    assert not states


def test_an_uncached_job_beside_a_cached_one_runs_exactly_and_alone(flux: Flux) -> None:
    a, b = _image(1, **CACHED), _image(2, prompt="a blue boat")
    found = _fused_pair(flux, flux.run, a, b, CacheUse(PERMISSIVE), None)
    assert found["fused"] == {"a": 1, "b": 1}  # other fusion keys: never one forward
    np.testing.assert_array_equal(found["outputs"]["b"], flux.run([b]))


@pytest.mark.parametrize("family", ["flux", "wan"])
def test_a_cached_job_resumes_with_an_empty_cache_and_the_uncached_resume_stays_exact(flux, wan, family) -> None:
    model, request = (flux, _image()) if family == "flux" else (wan, _video())
    k = STEPS // 2
    saved: list[bytes] = []

    def keep(boundary: Boundary) -> None:
        if boundary.done == k:
            saved.extend(state.to_bytes() for state in boundary.states())

    cached = model.run([request], Steps(on_step=keep, cache=CacheUse(PERMISSIVE)))
    resumed_cache = CacheUse(PERMISSIVE)
    resumed = model.run([request], Steps(resume=[StepState.from_bytes(saved[0])], cache=resumed_cache))
    assert resumed.shape == cached.shape and np.isfinite(resumed).all()
    assert 0.0 <= resumed.min() and resumed.max() <= 1.0
    # The resumed call's first step rebuilt the cache: one step fewer skipped than it ran.
    assert resumed_cache.steps_skipped == STEPS - k - 1
    # The same job uncached, resumed on the hooked denoiser, ends as its uninterrupted run.
    saved.clear()
    uninterrupted = model.run([request], Steps(on_step=keep))
    exact = model.run([request], Steps(resume=[StepState.from_bytes(saved[0])]))
    np.testing.assert_allclose(exact, uninterrupted, atol=1e-5, rtol=0)


def test_acceleration_on_a_family_without_a_step_cache_names_the_field() -> None:
    svd = SVD(SVDArgs(device="cpu"))
    with pytest.raises(InvalidRequest) as refused:
        svd.animate([_video(num_frames=8, **CACHED)])
    assert refused.value.field == "acceleration" and refused.value.message == no_step_cache("svd")


def test_an_unknown_acceleration_names_the_field() -> None:
    with pytest.raises(ValidationError, match="acceleration"):
        ImageRequest(prompt="a kite", width=64, height=64, steps=2, guidance=1.0, seed=0, acceleration="turbo")


@pytest.mark.parametrize("args", [SDXLArgs, SVDArgs, LLMArgs])
def test_quantize_on_a_family_without_it_is_a_config_error_naming_quantize(args) -> None:
    with pytest.raises(ValidationError) as refused:
        args(quantize="fp8")
    assert refused.value.errors()[0]["loc"] == ("quantize",)


def test_quantize_settings_are_checked_at_load() -> None:
    with pytest.raises(ValidationError, match="quantize"):
        FluxArgs(quantize="int4")
    with pytest.raises(ValidationError, match="quantize: LoRA adapters"):
        FluxArgs(quantize="fp8", adapters={"max_per_request": 2})
    with pytest.raises(ValidationError, match="kind"):
        WanArgs(step_cache={"kind": "mag"})
    assert FluxArgs().quantize == "none" and WanArgs().step_cache.threshold == 0.05


@pytest.mark.parametrize("args", [FluxArgs(device="cpu", max_sequence_length=64, adapters={"max_per_request": 0},
                                           quantize="fp8"),
                                  WanArgs(device="cpu", quantize="fp8")])
def test_fp8_without_float8_kernels_is_a_startup_error_naming_quantize(args) -> None:
    """torchao 0.18 has no CPU float8 path (it asserts CUDA capability 8.9+): the replica refuses to start."""
    family = Flux if isinstance(args, FluxArgs) else Wan
    with pytest.raises(ValueError, match=r"^quantize: fp8 needs a CUDA device of compute capability 8.9"):
        family(args)


def test_fp8_quantizes_only_large_aligned_linear_layers() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(64, 3072), torch.nn.Linear(3072, 3072), torch.nn.Linear(3072, 300),
                                 torch.nn.Conv2d(4, 4, 1))
    assert [quantizable(layer) for layer in module] == [False, True, False, False]
    with pytest.raises(ValueError, match="^quantize: "):
        quantize_denoiser(torch.nn.Sequential(torch.nn.Linear(8, 8)), "fp8")


def test_relative_error_of_forwards() -> None:
    reference = torch.ones(2, 4)
    assert relative_error(reference, reference.clone()) == 0.0
    assert relative_error((reference,), (reference * 1.1,)) == pytest.approx(0.1, rel=1e-5)
