"""A denoising job between two steps: its state (latents, steps done, the scheduler's own state), how it is captured
from and restored into the diffusers pipelines' own loops, and what a pipeline call does at each step boundary.

The pipelines keep their code paths. Each call gets a shallow view of its pipeline with its own *stepping scheduler*:
the family's scheduler class, extended to (a) restore a saved state right after the pipeline's `set_timesteps` and
continue from its step (the timesteps left, as img2img's begin index does), (b) take resumed latents as they are
(they were scaled by `init_noise_sigma` when the job began), and (c) keep the predicted clean sample (x0) of a step
for previews. The pipeline's `callback_on_step_end` sees every step boundary.
"""
from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from models.acceleration import CacheUse, installed
from models.fusion import DENOISERS, DenoiserCall, FusingDenoiser, solo

# Set by the constructor or `set_timesteps` (restoring `timesteps` would undo a resumed job's truncated ones).
_RECOMPUTED = frozenset({"_internal_dict", "timesteps", "all_timesteps", "init_noise_sigma",
                         "resume", "x0", "wants_x0"})
Scalar = int | float | bool | str | None


@dataclass
class StepState:
    """One request's denoising state after `step` of `total` steps: its latents (batch of 1) and its scheduler's
    attributes (tensors, lists of tensors such as a multistep solver's history, and plain values)."""

    step: int
    total: int
    latents: torch.Tensor
    scheduler: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """safetensors bytes (no pickle): every tensor on the CPU in its own dtype, the rest as JSON metadata."""
        tensors = {"latents": self.latents.detach().to("cpu").contiguous()}
        layout: dict[str, Any] = {}
        for name, value in self.scheduler.items():
            if isinstance(value, torch.Tensor):
                tensors[f"s.{name}"] = value.detach().to("cpu").contiguous()
                layout[name] = {"tensor": f"s.{name}"}
            elif isinstance(value, list) and any(isinstance(item, torch.Tensor) for item in value):
                slots = []
                for index, item in enumerate(value):
                    slots.append(None if item is None else f"s.{name}.{index}")
                    if item is not None:
                        tensors[f"s.{name}.{index}"] = item.detach().to("cpu").contiguous()
                layout[name] = {"list": slots}
            else:
                layout[name] = {"value": value}
        meta = {"step": self.step, "total": self.total, "scheduler": layout}
        return save_tensors(tensors, metadata={"montage": json.dumps(meta)})

    @classmethod
    def from_bytes(cls, data: bytes) -> StepState:
        tensors = load_tensors(data)
        meta = json.loads(_header_metadata(data)["montage"])
        scheduler: dict[str, Any] = {}
        for name, slot in meta["scheduler"].items():
            if "tensor" in slot:
                scheduler[name] = tensors[slot["tensor"]]
            elif "list" in slot:
                scheduler[name] = [None if key is None else tensors[key] for key in slot["list"]]
            else:
                scheduler[name] = slot["value"]
        return cls(meta["step"], meta["total"], tensors["latents"], scheduler)

    @property
    def nbytes(self) -> int:
        tensors = [self.latents, *_tensors(self.scheduler)]
        return sum(t.numel() * t.element_size() for t in tensors)


def start_from(state: StepState, strength: float = 0.0, seed: int | None = None) -> StepState:
    """A new job's state that starts from another job's `state` (a fork, a reused near-duplicate): its latents and
    scheduler at that step, the new job running only the steps left with its own conditioning. With a `seed` and a
    `strength` > 0 the latents are re-noised at the step's own noise level σ (`latents + strength·σ·ε`, ε from the
    seed), so forks of one state differ by seed; strength 0 continues the state as it was."""
    latents = state.latents
    if seed is not None and strength > 0.0:
        sigmas = state.scheduler.get("sigmas")
        sigma = float(sigmas[state.step]) if isinstance(sigmas, torch.Tensor) and sigmas.numel() > state.step else 1.0
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
        latents = latents + (strength * sigma * noise).to(latents.dtype)
    return StepState(state.step, state.total, latents.clone(), dict(state.scheduler))


def _header_metadata(data: bytes) -> dict[str, str]:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]).get("__metadata__", {})


def _tensors(attrs: dict[str, Any]) -> list[torch.Tensor]:
    found = []
    for value in attrs.values():
        items = value if isinstance(value, list) else [value]
        found += [item for item in items if isinstance(item, torch.Tensor)]
    return found


def _per_sample(value: Any, shape: torch.Size) -> bool:
    """A tensor shaped like the batch's latents (a solver's history, its last sample) belongs to each request."""
    return isinstance(value, torch.Tensor) and value.shape == shape


def capture(latents: torch.Tensor, scheduler: Any, step: int, total: int) -> list[StepState]:
    """Each request's state from a batch's latents and its (shared) scheduler, after `step` steps."""
    attrs = {name: value for name, value in vars(scheduler).items() if name not in _RECOMPUTED
             and _storable(value)}
    states = []
    for index in range(latents.shape[0]):
        def own(value: Any) -> Any:
            if _per_sample(value, latents.shape):
                return value[index:index + 1].clone()
            if isinstance(value, list):
                return [own(item) for item in value]
            return value.clone() if isinstance(value, torch.Tensor) else value

        states.append(StepState(step, total, latents[index:index + 1].clone(), {k: own(v) for k, v in attrs.items()}))
    return states


def _storable(value: Any) -> bool:
    if isinstance(value, list):
        return all(item is None or isinstance(item, (torch.Tensor, int, float, bool, str)) for item in value)
    return value is None or isinstance(value, (torch.Tensor, int, float, bool, str))


def stack(states: list[StepState]) -> StepState:
    """One batch state from requests' states at one step (the inverse of `capture`)."""
    first = states[0]
    if len({(s.step, s.total) for s in states}) != 1:
        raise ValueError("states: a pipeline call resumes requests from one step")

    def joined(value: Any, pick: Callable[[StepState], Any]) -> Any:
        if _per_sample(value, first.latents.shape):
            return torch.cat([pick(s) for s in states])
        if isinstance(value, list):
            return [joined(item, lambda s, i=i: pick(s)[i]) for i, item in enumerate(value)]
        return value

    attrs = {name: joined(value, lambda s, n=name: s.scheduler[n]) for name, value in first.scheduler.items()}
    return StepState(first.step, first.total, torch.cat([s.latents for s in states]), attrs)


class SteppingScheduler:
    """Mixed in before a diffusers scheduler class (see `stepping_scheduler`)."""

    resume: StepState | None = None
    wants_x0: Callable[[], bool] = staticmethod(lambda: False)
    x0: torch.Tensor | None = None

    def set_timesteps(self, *args: Any, **kwargs: Any) -> None:
        super().set_timesteps(*args, **kwargs)  # type: ignore[misc]
        if self.resume is None:
            return
        for name, value in self.resume.scheduler.items():
            setattr(self, name, _like(value, getattr(self, name, None), self.resume.latents.device))
        # The pipeline's loop runs over the steps left; the scheduler's own arithmetic sees them all (`step`).
        self.all_timesteps = self.timesteps
        self.timesteps = self.timesteps[self.resume.step:]

    @property
    def init_noise_sigma(self) -> float:
        if self.resume is not None:  # resumed latents were scaled when the job began
            return 1.0
        try:
            return super().init_noise_sigma  # type: ignore[misc]
        except AttributeError:
            return self.__dict__.get("init_noise_sigma", 1.0)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        left = self.timesteps
        if self.resume is not None:  # UniPC's order near the end counts the timesteps left from its index
            self.timesteps = self.all_timesteps
        try:
            return self._step(model_output, timestep, sample, *args, **kwargs)
        finally:
            self.timesteps = left

    def _step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.wants_x0():
            return super().step(model_output, timestep, sample, *args, **kwargs)  # type: ignore[misc]
        if self.step_index is None:  # type: ignore[attr-defined]
            self._init_step_index(timestep)  # type: ignore[attr-defined]
        sigma = self.sigmas[self.step_index].to(sample.device)  # type: ignore[attr-defined]
        output = super().step(model_output, timestep, sample, *args, **kwargs)  # type: ignore[misc]
        if isinstance(output, tuple) and len(output) > 1:
            self.x0 = output[1]  # Euler's pred_original_sample
        elif getattr(output, "pred_original_sample", None) is not None:
            self.x0 = output.pred_original_sample
        elif getattr(self, "predict_x0", False) and getattr(self, "model_outputs", None):
            self.x0 = self.model_outputs[-1]  # UniPC keeps this step's x0 as its newest history entry
        else:  # flow matching: x_t = (1 - σ)·x0 + σ·noise and the model predicts noise − x0
            self.x0 = sample - sigma * model_output
        return output


def _like(value: Any, current: Any, device: torch.device) -> Any:
    """A restored attribute on the device the freshly set scheduler keeps it on (sigmas stay on the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.to(current.device if isinstance(current, torch.Tensor) else device)
    if isinstance(value, list):
        return [_like(item, None, device) for item in value]
    return value


_CLASSES: dict[type, type] = {}


def stepping_scheduler(base: Any, resume: StepState | None, wants_x0: Callable[[], bool]) -> Any:
    """A fresh scheduler of `base`'s class and config that resumes from `resume` and records x0 when asked."""
    cls = type(base)
    stepping = _CLASSES.get(cls)
    if stepping is None:
        def set_timesteps(self: Any, *args: Any, **kwargs: Any) -> None:
            SteppingScheduler.set_timesteps(self, *args, **kwargs)

        # Pipelines read `set_timesteps`' signature to see whether it takes custom sigmas (FLUX's schedule).
        set_timesteps.__signature__ = inspect.signature(cls.set_timesteps)  # type: ignore[attr-defined]
        stepping = _CLASSES.setdefault(cls, type(f"Stepping{cls.__name__}", (SteppingScheduler, cls),
                                                 {"set_timesteps": set_timesteps}))
    scheduler = cls.from_config(base.config)
    scheduler.__class__ = stepping
    scheduler.resume = resume
    scheduler.wants_x0 = wants_x0
    return scheduler


@dataclass
class Boundary:
    """A pipeline call between two steps: `done` of `total` steps, the call having resumed from `resumed_from`."""

    done: int
    total: int
    resumed_from: int
    latents: torch.Tensor
    scheduler: Any
    preview_of: Callable[[torch.Tensor], list[bytes]]
    begin: int = 0  # the step the job's schedule begins at (image-to-image: `start_step`); 0 for a full run
    part: tuple[int, int] = (0, 1)  # the call is part i of n alike of its job (`Steps.part`)

    @property
    def progress(self) -> tuple[int, int, int]:
        """(steps done, steps, resumed from) of the job's own steps, those from `begin` in each of its parts: what
        progress reports."""
        run, (part, parts) = self.total - self.begin, self.part
        return part * run + self.done - self.begin, parts * run, max(self.resumed_from - self.begin, 0)

    def states(self) -> list[StepState]:
        """Each request's state now (copied off the device)."""
        return capture(self.latents, self.scheduler, self.done, self.total)

    def previews(self) -> list[bytes]:
        """Each request's preview image (JPEG) of this step's predicted clean sample; [] when none was kept."""
        x0 = self.scheduler.x0
        return [] if x0 is None else self.preview_of(x0)


@dataclass
class Steps:
    """What one pipeline call does at its step boundaries (built by the deployment): resume every request of the
    call from its state (all at one step), call `on_step` after each step, keep x0 every `preview_every` steps, and
    hand its denoiser calls to `denoise` (which runs them with other calls', `models/fusion.py`). `begin` is the
    step a job's schedule begins at (image-to-image runs only the last steps: `start_step`) and `keep` what each step's
    latents keep of the sources (inpainting: the area outside the mask), both set by the family."""

    on_step: Callable[[Boundary], None] | None = None
    resume: list[StepState] | None = None
    preview_every: int = 0
    denoise: Callable[[DenoiserCall], Any] | None = None
    begin: int = 0
    keep: Callable[[Any, torch.Tensor], torch.Tensor] | None = None  # (scheduler, latents after a step) -> latents
    part: tuple[int, int] = (0, 1)  # this call is part i of n alike of its job (an upscale's tiles): progress counts all
    cache: CacheUse | None = None  # the call's step cache (`models/acceleration.py`); None: exact

    @property
    def start(self) -> int:
        return self.resume[0].step if self.resume else 0

    def wants_preview(self, done: int) -> bool:
        return self.preview_every > 0 and done % self.preview_every == 0


def stepped_call(pipe: Any, steps: Steps | None, batch_size: int, total: int,
                 preview_of: Callable[[torch.Tensor], list[bytes]]) -> tuple[Any, dict[str, Any]]:
    """A view of `pipe` with its own stepping scheduler, and the call arguments that resume it (`latents`) and
    report each step boundary (`callback_on_step_end`)."""
    steps = steps or Steps()
    resume = None
    if steps.resume:
        if len(steps.resume) != batch_size or steps.resume[0].total != total:
            raise ValueError("resume: one state per request of the call, saved for its number of steps")
        resume = stack(steps.resume)
        # Every restored tensor goes where the pipeline runs (a solver's history too): `_like` follows the latents.
        resume.latents = resume.latents.to(pipe._execution_device)
    done = steps.start
    scheduler = stepping_scheduler(pipe.scheduler, resume, lambda: steps.wants_preview(done + 1))
    view = copy.copy(pipe)
    view.__dict__["scheduler"] = scheduler  # not through the pipeline's setattr: its config stays the pipeline's
    for name in DENOISERS:  # a denoiser with step cache hooks runs every forward in a context of its own
        module = view.__dict__.get(name)
        if module is not None and (steps.denoise or steps.cache or installed(module)):
            view.__dict__[name] = FusingDenoiser(module, steps.denoise or solo, steps.cache)
    kwargs: dict[str, Any] = {}
    if resume is not None:
        kwargs["latents"] = resume.latents

    def callback(_pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict:
        nonlocal done
        done = steps.start + index + 1
        changed = {} if steps.keep is None else {"latents": steps.keep(scheduler, tensors["latents"])}
        if steps.on_step is not None:
            latents = changed.get("latents", tensors["latents"])
            steps.on_step(Boundary(done, total, steps.start, latents, scheduler, preview_of, steps.begin, steps.part))
        scheduler.x0 = None
        return changed

    kwargs["callback_on_step_end"] = callback
    return view, kwargs


def noised_start(scheduler: Any, sources: torch.Tensor, noise: torch.Tensor, start: int, total: int) -> list[StepState]:
    """Image-to-image's start: the sources' latents noised to step `start` of `scheduler`'s schedule (a fresh
    scheduler of the pipeline's, set for `total` steps as the pipeline sets it), one state per request at that step;
    a pipeline call resumed from them runs the steps left. Step 0 is text-to-image's own start (the noise alone, so
    strength 1 is text to image), step `total` the sources themselves (σ = 0)."""
    if start == 0:
        latents = noise * getattr(scheduler, "init_noise_sigma", 1.0)  # flow matching has none: 1
    else:
        scheduler.set_begin_index(start)
        latents = noised(scheduler, sources, noise)
    scheduler._step_index = start  # the pipeline sets its begin index to 0 after restoring: this one is read first
    return capture(latents, scheduler, start, total)


def noised(scheduler: Any, sources: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The sources noised to the scheduler's current step: its step index once a step ran (inpainting's kept area
    after each step; the last step's is the sources), its begin index before."""
    if scheduler.begin_index is None:  # a pipeline that sets none (SDXL's Union) would have the timestep looked up
        scheduler.set_begin_index(scheduler.step_index or 0)
    at = torch.zeros(sources.shape[0], device=sources.device)  # unread: the index gives the noise level
    if hasattr(scheduler, "scale_noise"):  # flow matching
        return scheduler.scale_noise(sources, at, noise)
    return scheduler.add_noise(sources, noise, at)
