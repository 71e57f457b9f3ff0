"""CUDA graphs of a denoiser's forward, one per batch bucket: the launch-bound families (SDXL, its Union ControlNet,
SVD) replay a step's thousands of kernels as one graph instead of launching each from Python.

`graph_forward(module, buckets)` replaces the module's `forward` (its signature kept, so the step fusion of
`models/fusion.py` binds its inputs as before). A call of `rows` samples runs at the smallest bucket ≥ rows: every
input with a batch dimension is padded to it by repeating its last row, and every output is sliced back to `rows`
(each sample's row depends on that row alone, so the padding changes no request's output). Larger calls, and those
of a module whose inputs took more than `MAX_SIGNATURES` distinct shapes, run as they are.

On CUDA the first call of a new input signature (shapes, dtypes, the non-tensor arguments) captures that signature
at every bucket into one shared memory pool: its tensor inputs become static buffers that later calls copy into,
then the graph replays. The weights are read where they live, so LoRA hot-swap slots (`models/adapters.py`'s
`SlotBank`, in-place copies and scales) apply without recapture; a module's parameters must never be reassigned.
On another device the same buckets and padding run without capture (what the CPU tests cover).
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils import _pytree as pytree

MAX_SIGNATURES = 8  # input signatures captured per module (each holds its buckets' static inputs and outputs)


def bucket_for(rows: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket holding `rows` samples; None when none does."""
    return min((size for size in buckets if size >= rows), default=None)


def _batched(value: Any, rows: int) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == rows


def pad_rows(tree: Any, rows: int, bucket: int) -> Any:
    """Every tensor of `tree` with `rows` leading rows, its last row repeated up to `bucket` rows."""
    if bucket == rows:
        return tree

    def pad(value: Any) -> Any:
        if not _batched(value, rows):
            return value
        return torch.cat([value, value[-1:].expand(bucket - rows, *value.shape[1:])])

    return pytree.tree_map(pad, tree)


def slice_rows(tree: Any, bucket: int, rows: int) -> Any:
    """Every tensor of `tree` with `bucket` leading rows cut to its first `rows`."""
    return pytree.tree_map(lambda value: value[:rows] if _batched(value, bucket) else value, tree)


def _signature(leaves: list[Any], spec: Any, rows: int) -> tuple:
    """What a captured graph fixes of a call, whatever its batch size: the inputs' structure, each tensor's shape
    (beyond the batch dimension where it has one), dtype and device, and every other argument's value."""
    def part(value: Any) -> tuple:
        if _batched(value, rows):
            return "batch", tuple(value.shape[1:]), value.dtype, value.device
        if isinstance(value, torch.Tensor):
            return "shared", tuple(value.shape), value.dtype, value.device
        return "value", repr(value)

    return str(spec), *map(part, leaves)


@dataclass
class _Graph:
    """One captured bucket: its static input leaves, its graph and its static output."""

    inputs: list[Any]
    graph: torch.cuda.CUDAGraph
    output: Any


@dataclass
class GraphedForward:
    """A module's bucketed forward: its buckets, its captured graphs by (signature, bucket), and counts of what ran
    (`captures`, `replays`, `padded` calls, `eager` calls outside every bucket)."""

    run: Callable[..., Any]
    signature: inspect.Signature
    buckets: list[int]
    capture: bool
    graphs: dict[tuple, _Graph] = field(default_factory=dict)
    signatures: set[tuple] = field(default_factory=set)
    pool: Any = None
    captures: int = 0
    replays: int = 0
    padded: int = 0
    eager: int = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        inputs = dict(self.signature.bind(*args, **kwargs).arguments)
        first = next(iter(inputs.values()))
        rows = first.shape[0]
        timestep = inputs.get("timestep")
        if isinstance(timestep, torch.Tensor) and timestep.ndim == 0:  # solo and fused calls share their graphs
            inputs["timestep"] = timestep.to(first.device).reshape(1).expand(rows)
        leaves, spec = pytree.tree_flatten(inputs)
        key, bucket = _signature(leaves, spec, rows), bucket_for(rows, self.buckets)
        if bucket is None or (key not in self.signatures and len(self.signatures) >= MAX_SIGNATURES):
            self.eager += 1
            return self.run(**inputs)
        self.padded += bucket != rows
        padded = pad_rows(leaves, rows, bucket)
        if not self.capture:
            return slice_rows(self.run(**pytree.tree_unflatten(padded, spec)), bucket, rows)
        if key not in self.signatures:  # every bucket of a new signature at once: later batch sizes capture nothing
            self.signatures.add(key)
            for size in self.buckets:
                resized = pad_rows(leaves, rows, size) if size >= rows else slice_rows(leaves, rows, size)
                self.graphs[key, size] = self._capture(resized, spec)
        graph = self.graphs[key, bucket]
        for static, value in zip(graph.inputs, padded, strict=True):
            if isinstance(static, torch.Tensor):
                static.copy_(value)
        graph.graph.replay()
        self.replays += 1
        output = pytree.tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, graph.output)
        return slice_rows(output, bucket, rows)

    def _capture(self, leaves: list[Any], spec: Any) -> _Graph:
        """Warm-up runs on a side stream (kernel choices, compilation), then the capture into the shared pool."""
        static = [v.clone() if isinstance(v, torch.Tensor) else v for v in leaves]
        call = functools.partial(self.run, **pytree.tree_unflatten(static, spec))
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                call()
        torch.cuda.current_stream().wait_stream(stream)
        self.pool = self.pool or torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):  # other threads wait
            output = call()
        self.captures += 1
        return _Graph(static, graph, output)


def graph_forward(module: torch.nn.Module, buckets: Sequence[int]) -> GraphedForward:
    """Installs the bucketed forward on `module` (captured on CUDA) and returns it. A module compiled whole
    (`module.compile()`) has its forward compiled inside instead, so the graph captures the compiled kernels."""
    run = module.forward
    if getattr(module, "_compiled_call_impl", None) is not None:
        module._compiled_call_impl = None
        run = torch.compile(run)
    graphed = GraphedForward(run, inspect.signature(module.forward), sorted(set(buckets)),
                             capture=next(module.parameters()).device.type == "cuda")
    module.forward = functools.wraps(module.forward)(graphed)
    module.graphed = graphed
    return graphed
