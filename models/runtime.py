"""Device, dtype, seeding and module construction shared by every family."""
from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from config.families import FamilyArgs, Source
from models.results import video_result
from models.grid import check_grid
from models.steps import Steps
from models.types import Metadata, VideoRequest, VideoResult

T = TypeVar("T")
R = TypeVar("R")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name} requested but CUDA is not available")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build full-size modules directly in their serving dtype (no float32 copy)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build(factory: Callable[[], T], device: torch.device | str, dtype: torch.dtype, seed: int = 0, *,
          fast_init: bool = False) -> T:
    """Constructs a randomly initialised module on `device` in `dtype` (seeded, so tiny builds repeat).

    `fast_init` skips the per-layer initialisers (single-threaded on a CPU: minutes for a 5.7 B encoder) and tiles
    seeded random values over the parameters instead, at memory-copy speed: for full-size random weights on a CPU.
    """
    torch.manual_seed(seed)
    with torch.device(device), default_dtype(dtype), _skip_init(fast_init):
        module = factory()
    if isinstance(module, torch.nn.Module):
        if fast_init:
            fill_random(module, seed)
        # Legacy constructors (torch.Tensor([...]), e.g. SVD's AlphaBlender) ignore the device context.
        module.to(device).eval().requires_grad_(False)
    return module


def _skip_init(skip: bool) -> contextlib.AbstractContextManager:
    from transformers.initialization import no_init_weights

    return no_init_weights() if skip else contextlib.nullcontext()


_FILL_BLOCK = 1 << 20


@torch.no_grad()
def fill_random(module: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    """Seeded N(0, std²) values, a block of 2²⁰ tiled over each parameter from its own offset."""
    block = torch.randn(2 * _FILL_BLOCK, generator=torch.Generator().manual_seed(seed)) * std
    for index, param in enumerate(module.parameters()):
        flat = param.view(-1)
        start = index * 7919 % _FILL_BLOCK
        pattern = block[start:start + _FILL_BLOCK].to(device=flat.device, dtype=flat.dtype)
        rows, rest = divmod(flat.numel(), _FILL_BLOCK)
        flat[:rows * _FILL_BLOCK].view(rows, _FILL_BLOCK).copy_(pattern.expand(rows, -1))
        flat[rows * _FILL_BLOCK:].copy_(pattern[:rest])


def single_file_config(args: FamilyArgs) -> str:
    """`args.config_folder`, once it and each single-file checkpoint of `args` are on this node: checked where the
    weights load, since the node that validated the serve config need not hold them. ValueError naming the field."""
    for field in args.checkpoint_files():
        if not Path(path := getattr(args, field)).is_file():
            raise ValueError(f"{field}: no checkpoint file at {path!r}")
    if not Path(args.config_folder, "model_index.json").is_file():
        raise ValueError(f"config_folder: {args.config_folder!r} holds no model_index.json (a diffusers folder)")
    return args.config_folder


def generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    """One generator per request: a request's noise never depends on its batch-mates."""
    gen_device = "cpu" if device.type == "mps" else device
    return [torch.Generator(gen_device).manual_seed(seed) for seed in seeds]


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
    every result carries. Subclasses set `name` to their key in `config.specs.SPECS`."""

    name: str = "model"

    def __init__(self, args: FamilyArgs) -> None:
        self.args = args
        self.device = resolve_device(args.device)
        self.dtype = resolve_dtype(args.dtype, self.device)
        self.defaults = args.defaults

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
        """Raises `InvalidRequest` naming the field when a request's size (or frame count) is off the latent grid."""
        check_grid(self.name, self.size_multiple, self.frame_multiple, request.width, request.height,
                   getattr(request, "num_frames", None))

    @staticmethod
    def group_key(request: Any) -> Hashable:
        """Requests with equal keys run in one model call; by default any requests do."""
        return 0

    @staticmethod
    def fuse_key(request: Any) -> Hashable | None:
        """Jobs of one operation with equal keys may run their denoiser calls of a step as one (`models/fusion.py`):
        equal latent shapes and operations (image to image apart from text to image); none for adapters or controls (they change the denoiser, not only its inputs)."""
        if getattr(request, "loras", ()) or getattr(request, "controls", ()):
            return None
        return request.width, request.height, getattr(request, "num_frames", None), getattr(request, "operation", None)

    def one_group(self, requests: Sequence[R]) -> R:
        """The first of `requests` once each is valid and all share one group key: what one pipeline call takes."""
        for request in requests:
            self.validate(request)
        if len({self.group_key(r) for r in requests}) != 1:
            raise ValueError("requests: one pipeline call takes one compatible group; the batch operations (generate, "
                             "edit, animate) split mixed batches")
        return requests[0]

    def grouped(self, requests: Sequence[R], run: Callable[[list[R], Steps | None], Sequence[Any]],
                encode: Callable[[R, Any, Metadata], T], steps: Steps | None = None) -> list[T]:
        """Validates every request, runs each compatible group in one `run(group, steps)` and encodes each output
        with `encode(request, output, metadata)`; results keep the request order."""
        for request in requests:
            self.validate(request)

        def run_group(group: list[R]) -> list[T]:
            started = time.perf_counter()
            outputs = run(group, steps)
            meta = self.metadata(len(group), started, **self.group_metadata(group))
            return [encode(request, output, meta) for request, output in zip(group, outputs, strict=True)]

        return run_grouped(requests, self.group_key, run_group)

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

    def run(self, requests: list[VideoRequest], steps: Steps | None = None) -> np.ndarray:
        """Float frames (B, F, H, W, 3) in [0, 1] of one compatible group."""
        raise NotImplementedError

    def animate(self, requests: list[VideoRequest], steps: Steps | None = None) -> list[VideoResult]:
        """Mixed batches are split into compatible groups; results keep the request order."""
        return self.grouped(requests, self.run, video_result, steps)

    def warmup_requests(self) -> list[tuple[Callable[[list], Any], VideoRequest]]:
        d = self.defaults
        return [(self.run, VideoRequest(image=blank_png(d.width, d.height), prompt="warm-up", width=d.width,
                                        height=d.height, num_frames=d.num_frames, fps=d.fps, steps=2,
                                        guidance=d.guidance, seed=0))]


def apply_runtime(pipe: Any, args: FamilyArgs, denoiser: str) -> None:
    """Fused projections, memory format, optional compile and progress bars, the same for every pipeline."""
    pipe.set_progress_bar_config(disable=True)
    if getattr(args, "fuse_qkv", False):
        getattr(pipe, denoiser).fuse_qkv_projections()
    if getattr(args, "channels_last", False):
        getattr(pipe, denoiser).to(memory_format=torch.channels_last)
    if args.compile:
        compile_denoiser(getattr(pipe, denoiser))


def compile_denoiser(module: Any) -> None:
    """Regional compilation: each repeated block (transformer layers) is compiled once and reused, which costs
    seconds instead of minutes per shape; a model that declares no repeated blocks is compiled whole."""
    if getattr(module, "_repeated_blocks", None):
        module.compile_repeated_blocks(fullgraph=True)
    else:
        module.compile()
