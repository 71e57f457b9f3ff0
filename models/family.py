"""The family base classes: one family is the grouping authority of its requests (`validate`, `group_key`,
`run_group`), and stamps the metadata every result carries. How its modules load: `models/loading.py`."""
from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from config.families import FamilyArgs, Source
from config.specs import no_step_cache
from models.acceleration import CacheUse
from models.errors import InvalidRequest
from models.results import video_result
from models.grid import check_grid
from models.loading import resolve_device, resolve_dtype
from models.parallel import check_sequence
from models.steps import Steps
from models.types import Metadata, VideoRequest, VideoResult

T = TypeVar("T")
R = TypeVar("R")


def group_by(items: Sequence[T], key: Callable[[T], Any]) -> list[list[int]]:
    """Indices of `items` grouped by `key`, each group in arrival order, groups by first arrival."""
    groups: dict[Any, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(key(item), []).append(index)
    return list(groups.values())


def run_grouped(items: Sequence[T], key: Callable[[T], Any], run: Callable[[list[T]], list[Any]]) -> list[Any]:
    """Runs each compatible group in one call and returns results in the order of `items`."""
    results: list[Any] = [None] * len(items)
    for indices in group_by(items, key):
        for index, result in zip(indices, run([items[i] for i in indices]), strict=True):
            results[index] = result
    return results


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class Family:
    """Base for a model family: resolved device/dtype, request validation, grouped batch execution and the metadata
    every result carries. Subclasses set `name` to their key in `config.specs.SPECS`, and `operations`.

    The family is the one grouping authority: `validate` checks one request (once: where a replica admits it, or in
    `batch`), `group_key` says which requests share a pipeline call (a replica's admission groups by it, `batch`
    too), and `run_group` runs one such group, encodes its outputs and stamps their metadata."""

    name: str = "model"
    # batch operation (`generate`, `edit`, ...) → (the method that runs one compatible group, its output encoder)
    operations: ClassVar[dict[str, tuple[str, Callable[[Any, Any, Metadata], Any]]]] = {}
    gang: Any = None  # a `models.parallel.Gang` once the family runs its denoiser calls on several ranks

    def __init__(self, args: FamilyArgs) -> None:
        self.args = args
        self.device = resolve_device(args.device)
        self.dtype = resolve_dtype(args.dtype, self.device)
        self.defaults = args.defaults
        self.step_cache = getattr(args, "step_cache", None)  # what acceleration: step_cache uses; None: refused

    @property
    def source(self) -> Source:
        return self.args.source

    def metadata(self, batch_size: int, started: float, **extra: Any) -> Metadata:
        return Metadata(
            model=self.name,
            source=self.source.value,
            device=str(self.device),
            batch_size=batch_size,
            run_ms=(time.perf_counter() - started) * 1000.0,
            extra=extra,
        )

    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of it (pixels per latent cell at the coarsest level)."""
        return 8

    @property
    def frame_multiple(self) -> int:
        """num_frames must be frame_multiple·k + 1 (1: any count)."""
        return 1

    def validate(self, request: Any) -> None:
        """Raises `InvalidRequest` naming the field when a request's size (or frame count) is off the latent grid, or
        when it asks for a step cache the family has not."""
        check_grid(self.name, self.size_multiple, self.frame_multiple, request.width, request.height,
                   getattr(request, "num_frames", None))
        if self.gang is not None:
            check_sequence(self.gang.layout, self, request)
        if getattr(request, "acceleration", "none") != "none" and self.step_cache is None:
            raise InvalidRequest("acceleration", no_step_cache(self.name))

    @staticmethod
    def group_key(request: Any) -> Hashable:
        """Requests with equal keys run in one model call; by default any requests do."""
        return 0

    @staticmethod
    def fuse_key(request: Any) -> Hashable | None:
        """Jobs of one operation with equal keys may run their denoiser calls of a step as one (`models/fusion.py`):
        equal latent shapes and operations (image to image apart from text to image) and one acceleration (a cached
        forward's rows share one cache state); none for adapters or controls (they change the denoiser, not only its
        inputs)."""
        if getattr(request, "loras", ()) or getattr(request, "controls", ()):
            return None
        return (request.width, request.height, getattr(request, "num_frames", None),
                getattr(request, "operation", None), getattr(request, "acceleration", "none"))

    def one_group(self, requests: Sequence[R]) -> R:
        """The first of `requests` once all share one group key: what one pipeline call takes (the requests are
        valid: `validate` ran where they were admitted)."""
        if len({self.group_key(r) for r in requests}) != 1:
            raise ValueError("requests: one pipeline call takes one compatible group; the batch operations (generate, "
                             "edit, animate) split mixed batches")
        return requests[0]

    def batch(self, operation: str, requests: Sequence[R], steps: Steps | None = None) -> list:
        """A batch of `operation` called in process (the public `generate`, `edit`, ...): every request validated,
        then each compatible group through `run_group`; results keep the request order."""
        for request in requests:
            self.validate(request)
        return run_grouped(requests, self.group_key, lambda group: self.run_group(operation, group, steps))

    def run_group(self, operation: str, group: list[R], steps: Steps | None = None) -> list:
        """One compatible group of valid requests: one call of the operation's method (`operations`) (with the
        group's step cache when it asked for one), each output encoded with the group's metadata; results in the
        group's order."""
        method, encode = self.operations[operation]
        started = time.perf_counter()
        cache = CacheUse(self.step_cache) if getattr(group[0], "acceleration", "none") == "step_cache" else None
        try:
            outputs = getattr(self, method)(group, dataclasses.replace(steps or Steps(), cache=cache) if cache else steps)
        finally:
            if cache:
                cache.release()
        meta = self.metadata(len(group), started, **self.group_metadata(group))
        meta.steps_skipped = cache.steps_skipped if cache else 0
        return [encode(request, output, meta) for request, output in zip(group, outputs, strict=True)]

    def group_metadata(self, group: list[Any]) -> dict[str, Any]:
        """Extra metadata of one group's results; none by default."""
        return {}

    def warmup(self) -> None:
        """With `compile` or `cuda_graphs`: runs every operation at the default shape, batch 1 then 2 (the second call
        makes the batch dimension dynamic; the first captures every graph bucket), so compilation and capture happen
        while the replica starts, never in a request."""
        if not (self.args.compile or getattr(self.args, "cuda_graphs", False)):
            return
        for run, request in self.warmup_requests():
            for size in (1, 2):
                run([request.model_copy(update={"seed": seed}) for seed in range(size)])
        if self.device.type == "cuda":  # the batch-2 activations stay reserved otherwise (4 GiB for FLUX at 1024²)
            torch.cuda.empty_cache()

    def warmup_requests(self) -> list[tuple[Callable[[list], Any], Any]]:
        """(operation, default-shape request) pairs that compile distinct graphs; none by default."""
        return []

    def check(self) -> None:
        """Raises when the model or its device is unusable (used by health checks)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.empty(1, device=self.device).add_(1)


def blank_png(width: int, height: int) -> bytes:
    """A mid-grey PNG: the conditioning image of warm-up requests."""
    from models.media import encode_png

    return encode_png(np.full((height, width, 3), 0.5, np.float32))


class VideoFamily(Family):
    """An image-to-video family: `animate(batch)` over its `run(group)`, one compatible group per pipeline call."""

    operations = {"animate": ("run", video_result)}

    def run(self, requests: list[VideoRequest], steps: Steps | None = None) -> np.ndarray:
        """Float frames (B, F, H, W, 3) in [0, 1] of one compatible group."""
        raise NotImplementedError

    def animate(self, requests: list[VideoRequest], steps: Steps | None = None) -> list[VideoResult]:
        """Mixed batches are split into compatible groups; results keep the request order."""
        return self.batch("animate", requests, steps)

    def warmup_requests(self) -> list[tuple[Callable[[list], Any], VideoRequest]]:
        d = self.defaults
        return [(self.run, VideoRequest(image=blank_png(d.width, d.height), prompt="warm-up", width=d.width,
                                        height=d.height, num_frames=d.num_frames, fps=d.fps, steps=2,
                                        guidance=d.guidance, seed=0))]
