"""Device, dtype, seeding, module construction and compilation: how a family's modules are built and served."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from config.families import FamilyArgs

T = TypeVar("T")

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



def apply_runtime(pipe: Any, args: FamilyArgs, denoiser: str) -> None:
    """Fused projections, memory format, optional compile and progress bars, the same for every pipeline."""
    pipe.set_progress_bar_config(disable=True)
    if getattr(args, "fuse_qkv", False):
        getattr(pipe, denoiser).fuse_qkv_projections()
    if getattr(args, "channels_last", False):
        getattr(pipe, denoiser).to(memory_format=torch.channels_last)
    if getattr(args, "quantize", "none") != "none":
        from models.quantize import quantize_denoiser

        quantize_denoiser(getattr(pipe, denoiser), args)
    if args.compile:
        compile_denoiser(getattr(pipe, denoiser))


def compile_denoiser(module: Any) -> None:
    """Regional compilation: each repeated block (transformer layers) is compiled once and reused, which costs
    seconds instead of minutes per shape; a model that declares no repeated blocks is compiled whole."""
    if getattr(module, "_repeated_blocks", None):
        module.compile_repeated_blocks(fullgraph=True)
    else:
        module.compile()
