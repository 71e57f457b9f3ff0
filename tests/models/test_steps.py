"""Step state on every diffusion pipeline (tiny, CPU): a job saved at step k, serialised, restored and run to the end
equals the uninterrupted run; previews of x0 decode; resuming after the last step only decodes."""
from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

import helpers
from config.families import FluxArgs, SDXLArgs, Source, SVDArgs, WanArgs
from deployments.scheduler import StepScheduler
from models.flux import Flux
from models.previews import MAX_SIDE
from models.sdxl import SDXL
from models.steps import Boundary, Steps, StepState, start_from
from models.svd import SVD
from models.types import Control, EditRequest, ImageRequest, VideoRequest
from models.wan import Wan

STEPS = 6
SIZE = dict(width=64, height=64, steps=STEPS)


@pytest.fixture(scope="module")
def families() -> dict:
    return dict(sdxl=SDXL(SDXLArgs(source=Source.TINY, device="cpu")),
                flux=Flux(FluxArgs(source=Source.TINY, device="cpu")),
                svd=SVD(SVDArgs(source=Source.TINY, device="cpu")),
                wan=Wan(WanArgs(source=Source.TINY, device="cpu")))


def _jobs(name: str, families: dict):
    """(run, two requests) of one pipeline."""
    image = helpers.png(64, 64, 5)
    plain = [ImageRequest(prompt="a red kite", guidance=5.0, seed=seed, **SIZE) for seed in (1, 2)]
    if name == "sdxl":
        return families["sdxl"].run, plain
    if name == "sdxl_union":
        control = Control(type="canny", image=helpers.png(64, 64, 3))
        return families["sdxl"].run, [r.model_copy(update={"controls": (control,)}) for r in plain]
    if name == "flux":
        return families["flux"].run, plain
    if name == "kontext":
        return families["flux"].run_edit, [EditRequest(prompt="add snow", image=image, guidance=3.5, seed=s, **SIZE)
                                           for s in (1, 2)]
    frames = dict(svd=8, wan=5)[name]
    return families[name].run, [VideoRequest(image=image, prompt="a cat", guidance=5.0, seed=s, num_frames=frames,
                                             fps=8, **SIZE) for s in (1, 2)]


PIPELINES = ["sdxl", "sdxl_union", "flux", "kontext", "svd", "wan"]


RESUME_AT = (STEPS // 2, STEPS)


@dataclass
class Recorded:
    """A pipeline's two requests run once as they are (`plain`) and once `observed`: previews every 2 steps, and each
    request's state saved at every step of RESUME_AT."""

    run: Callable
    requests: list
    plain: np.ndarray
    observed: np.ndarray
    saved: dict[int, list[bytes]]
    previews: dict[int, list[bytes]]


@pytest.fixture(scope="module")
def recorded(families: dict) -> Callable[[str], Recorded]:
    """Each pipeline's runs, made once for the module's resume and preview tests."""
    runs: dict[str, Recorded] = {}

    def record(name: str) -> Recorded:
        if name not in runs:
            run, requests = _jobs(name, families)
            saved: dict[int, list[bytes]] = {k: [] for k in RESUME_AT}
            previews: dict[int, list[bytes]] = {}

            def keep(boundary: Boundary) -> None:
                if boundary.done in saved:
                    saved[boundary.done].extend(state.to_bytes() for state in boundary.states())
                if images := boundary.previews():
                    previews[boundary.done] = images

            observed = run(requests, Steps(on_step=keep, preview_every=2))
            runs[name] = Recorded(run, requests, run(requests), observed, saved, previews)
        return runs[name]

    return record


@pytest.mark.parametrize("name", PIPELINES)
@pytest.mark.parametrize("k", RESUME_AT)
def test_a_job_restored_at_step_k_ends_as_the_uninterrupted_run(recorded, name: str, k: int) -> None:
    job = recorded(name)
    run, requests, uninterrupted = job.run, job.requests, job.plain
    assert len(job.saved[k]) == len(requests)
    restored = [StepState.from_bytes(data) for data in job.saved[k]]
    assert [(s.step, s.total, s.latents.shape[0]) for s in restored] == [(k, STEPS, 1)] * len(requests)

    seen: list[tuple[int, int]] = []
    resumed = run(requests, Steps(on_step=lambda b: seen.append((b.done, b.resumed_from)), resume=restored))
    assert seen == [(done, k) for done in range(k + 1, STEPS + 1)]  # only the steps left are computed
    assert resumed.shape == uninterrupted.shape
    np.testing.assert_allclose(resumed, uninterrupted, atol=1e-5, rtol=0)
    # Each request resumes from its own state: a single request restored alone ends as it did in the batch.
    alone = run(requests[1:], Steps(resume=restored[1:]))
    np.testing.assert_allclose(alone[0], uninterrupted[1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["sdxl", "flux"])
def test_a_job_started_from_another_jobs_state_runs_the_steps_left_and_a_seed_renoises_it(families: dict,
                                                                                          name: str) -> None:
    """`start_from` (forks, approximate reuse): strength 0 continues the state as it was (the run's own pixels); a
    seed adds noise at the step's own σ, the same for the same seed, so forks differ by seed and not by chance."""
    run, requests = _jobs(name, families)
    saved: list[StepState] = []
    whole = run(requests[:1], Steps(on_step=lambda b: saved.extend(b.states()) if b.done == 3 else None))
    [state] = saved
    sigma = float(state.scheduler["sigmas"][3])
    noised = start_from(state, 0.5, seed=7)
    assert torch.allclose(noised.latents - state.latents, 0.5 * sigma * torch.randn(
        state.latents.shape, generator=torch.Generator().manual_seed(7)).to(state.latents.dtype), atol=1e-5)
    seen: list[int] = []
    same = run(requests[:1], Steps(on_step=lambda b: seen.append(b.done), resume=[start_from(state)]))
    assert seen == [4, 5, 6]
    np.testing.assert_allclose(same, whole, atol=1e-5, rtol=0)
    forks = [run(requests[:1], Steps(resume=[start_from(state, 0.5, seed)])) for seed in (7, 7, 8)]
    np.testing.assert_allclose(forks[0], forks[1], atol=1e-6, rtol=0)
    assert np.abs(forks[0] - forks[2]).max() > 1e-3 and np.abs(forks[0] - whole).max() > 1e-3


@pytest.mark.parametrize("name", PIPELINES)
def test_previews_of_x0_are_small_jpegs_every_k_steps_and_change_nothing(recorded, name: str) -> None:
    job = recorded(name)
    assert sorted(job.previews) == [2, 4, 6]
    for images in job.previews.values():
        assert len(images) == len(job.requests)
        for data in images:
            picture = Image.open(io.BytesIO(data))
            assert picture.format == "JPEG" and max(picture.size) <= MAX_SIDE
    np.testing.assert_array_equal(job.observed, job.plain)  # previews and saved states change no pixel


def test_a_state_saved_for_another_number_of_steps_is_refused(families: dict) -> None:
    run, requests = _jobs("sdxl", families)
    saved: list[StepState] = []
    run(requests[:1], Steps(on_step=lambda b: saved.extend(b.states()) if b.done == 2 else None))
    with pytest.raises(ValueError, match="resume"):
        run([requests[0].model_copy(update={"steps": STEPS + 2})], Steps(resume=saved))


@pytest.mark.parametrize("name", ["sdxl", "flux", "kontext", "svd", "wan"])
def test_a_job_joining_a_running_one_at_a_step_boundary_ends_as_its_solo_run(families: dict, name: str) -> None:
    """Continuous batching: b (another seed and prompt, fewer steps) joins a's turn at a's step 2; from then on their
    denoiser calls run as one forward, each at its own timestep and scheduler state; each ends as its solo run."""
    run, (a, b) = _jobs(name, families)
    b = b.model_copy(update={"steps": STEPS - 2, "prompt": "a blue boat"})
    family = families["flux" if name == "kontext" else name]
    scheduler = StepScheduler(batch_budget=8)
    tickets = [scheduler.ticket("normal", user, family.fuse_key(request)) for user, request in (("a", a), ("b", b))]
    outputs: dict[str, np.ndarray] = {}
    steps_of_b: list[int] = []

    def job(request, ticket, on_step) -> None:
        def boundary(step: Boundary) -> None:
            on_step(step)
            scheduler.boundary(ticket)

        with scheduler.running(ticket):
            outputs[ticket.user] = run([request], Steps(on_step=boundary, denoise=partial(scheduler.fused, ticket)))

    joining = threading.Thread(target=job, args=(b, tickets[1], lambda step: steps_of_b.append(step.done)))

    def start_b(step: Boundary) -> None:
        if step.done == 2:
            joining.start()
            while not scheduler.waiting():  # b waits for a's boundary: it joins there
                time.sleep(0.001)

    job(a, tickets[0], start_b)
    joining.join()
    assert steps_of_b == list(range(1, STEPS - 1))
    assert [ticket.fused_requests for ticket in tickets] == [2, 2]
    np.testing.assert_allclose(outputs["a"], run([a]), atol=1e-4, rtol=0)
    np.testing.assert_allclose(outputs["b"], run([b]), atol=1e-4, rtol=0)
