"""Several jobs' denoiser calls of one step run as one call: continuous batching at step boundaries.

Each job keeps its own pipeline loop and its own stepping scheduler (its timesteps, its solver history); only the
denoiser's forward is shared. A pipeline view's denoiser (`unet` or `transformer`) is a `FusingDenoiser`, which hands
each call to a router (the replica's step scheduler, `deployments/scheduler.py`); the router collects the calls of the
jobs running together and runs them with `run_calls`: inputs concatenated along the batch, each job's timestep per
sample, the output split back. Calls fuse only when everything but their batch dimension is equal.
"""
from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import torch

from models.acceleration import CacheUse, cached_forward

DENOISERS = ("unet", "transformer")  # the pipeline attributes that hold a denoiser
SHARED_INPUTS = frozenset({"txt_ids", "img_ids"})  # FLUX's position ids: one per call, no batch dimension


class DenoiserCall:
    """One job's denoiser call, its inputs bound to the forward's parameter names (its timestep one per sample)."""

    def __init__(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], cache: CacheUse | None = None,
                 context: str = "cond") -> None:
        self.module = module
        self.cache, self.context = cache, context  # its job's step cache (None: exact) and its pipeline's context
        self.requests = 1  # the requests its rows hold (its group's size: the router sets it)
        self.inputs = dict(inspect.signature(module.forward).bind(*args, **kwargs).arguments)
        first = next(iter(self.inputs.values()))
        self.batch = first.shape[0]
        timestep = self.inputs.get("timestep")
        if timestep is not None:
            timestep = torch.as_tensor(timestep, device=first.device)
            self.inputs["timestep"] = timestep.reshape(1).expand(self.batch) if timestep.numel() == 1 else timestep
        self.result: Any = None
        self.error: BaseException | None = None
        self.joint = 0  # the requests its forward ran (its own included)
        self.device_s = 0.0  # its share of its forward's measured device time (by its rows of the batch)
        # Equal for calls that may run as one (shared tensors are compared when they run, see `run_calls`).
        self.signature: Hashable = (id(self.module), cache and cache.config, _signature(self.inputs, self.batch))

    def run(self) -> Any:
        return self.module(**self.inputs)


def _batched(name: str, value: Any, batch: int) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch and name not in SHARED_INPUTS


def _signature(inputs: dict[str, Any], batch: int) -> tuple:
    parts = []
    for name, value in sorted(inputs.items()):
        if _batched(name, value, batch):
            parts.append((name, "batch", tuple(value.shape[1:]), value.dtype, value.device))
        elif isinstance(value, torch.Tensor):
            parts.append((name, "shared", tuple(value.shape), value.dtype, value.device))
        elif isinstance(value, dict):
            parts.append((name, "dict", _signature(value, batch)))
        elif value is None or isinstance(value, (bool, int, float, str)):
            parts.append((name, "value", value))
        else:  # anything else (lists of residuals, objects) makes the call its own
            parts.append((name, "own", id(value)))
    return tuple(parts)


def _merged(inputs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """The first call's inputs with every batched one concatenated over all calls (equal signatures batch the same
    inputs, each by its own batch size)."""
    merged = {}
    for name, value in inputs[0].items():
        if _batched(name, value, batch):
            merged[name] = torch.cat([one[name] for one in inputs])
        elif isinstance(value, dict):
            merged[name] = _merged([one[name] for one in inputs], batch)
        else:
            merged[name] = value
    return merged


def _split(output: Any, sizes: list[int]) -> list[Any]:
    if isinstance(output, torch.Tensor):
        return list(output.split(sizes))
    if isinstance(output, (tuple, list)):
        return [type(output)(parts) for parts in zip(*(_split(item, sizes) for item in output), strict=True)]
    raise TypeError(f"a fused denoiser call returned {type(output).__name__}; only tensors and tuples split")


def _shared_equal(a: dict[str, Any], b: dict[str, Any], batch: int) -> bool:
    for name, value in a.items():
        if isinstance(value, dict) and not _shared_equal(value, b[name], batch):
            return False
        if isinstance(value, torch.Tensor) and not _batched(name, value, batch) and not torch.equal(value, b[name]):
            return False
    return True


def run_calls(calls: list[DenoiserCall]) -> None:
    """Runs calls as few forwards as their signatures and shared inputs allow; each call gets its `result` (its own
    rows of the output) or its `error`."""
    waiting = list(calls)
    while waiting:
        first = waiting[0]
        group = [call for call in waiting
                 if call.signature == first.signature and _shared_equal(first.inputs, call.inputs, first.batch)]
        waiting = [call for call in waiting if call not in group]
        if first.cache is not None:  # a cache context's rows keep their order (`models/acceleration.py`)
            group.sort(key=lambda call: (call.cache.token, call.context))
            first = group[0]
        for call in group:
            call.joint = sum(member.requests for member in group)
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                if len(group) == 1:
                    first.result = cached_forward(group, first.run)
                else:
                    merged = _merged([call.inputs for call in group], first.batch)
                    output = cached_forward(group, lambda: first.module(**merged))
                    for call, part in zip(group, _split(output, [call.batch for call in group]), strict=True):
                        call.result = part
            synchronize()
        except Exception as error:  # every job of the forward gets the failure
            for call in group:
                call.error = error
        elapsed, rows = time.perf_counter() - started, sum(call.batch for call in group)
        for call in group:
            call.device_s = elapsed * call.batch / rows


def synchronize() -> None:
    """Waits for the device's queued work (CUDA runs asynchronously), so a clock read after it times that work."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def solo(call: DenoiserCall) -> Any:
    """A route that runs each call on its own."""
    run_calls([call])
    if call.error is not None:
        raise call.error
    return call.result


class FusingDenoiser:
    """A pipeline's denoiser whose calls go through `route` (which returns each call's result), with its job's step
    cache (None: exact); every other attribute is the module's own."""

    def __init__(self, module: torch.nn.Module, route: Callable[[DenoiserCall], Any],
                 cache: CacheUse | None = None) -> None:
        self._module, self._route, self._cache = module, route, cache
        self._context = "cond"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    @contextlib.contextmanager
    def cache_context(self, name: str, **_: Any) -> Iterator[None]:
        """The pipeline names its call ("cond", "uncond"); the forward's context is set where it runs."""
        self._context = name
        yield

    def _reset_stateful_cache(self, recurse: bool = True) -> None:
        """A pipeline's end would reset every job's cache states on the shared denoiser: each call drops its own
        (`CacheUse.release`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._route(DenoiserCall(self._module, args, kwargs, self._cache, self._context))
