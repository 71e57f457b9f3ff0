"""fp8 denoisers (`quantize: fp8`): torchao's float8 dynamic activations and weights with per-row scales on the
transformer's large linear layers, applied before compile; and the relative error it adds, for the bench.

torchao 0.18's float8 path has no CPU kernel (its `_check_hardware_support` asserts CUDA compute capability 8.9 or
later, MI300 or XPU), so a replica whose device has none refuses to start, naming `quantize`.
"""
from __future__ import annotations

from typing import Any

import torch

MIN_FEATURES = 256  # the fewest input and output features of a quantized layer
ALIGN = 16  # float8 matmuls (torch._scaled_mm) need both dimensions a multiple of 16


def fp8_supported(device: torch.device) -> bool:
    """Whether torchao's float8 kernels run on `device` (CUDA compute capability 8.9+: Ada, Hopper, Blackwell)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def quantizable(module: torch.nn.Module, _name: str = "") -> bool:
    """The linear layers worth quantizing: large (embedders and tiny models' projections gain nothing and lose the
    most), and aligned for float8 matmuls."""
    return (isinstance(module, torch.nn.Linear) and min(module.in_features, module.out_features) >= MIN_FEATURES
            and module.in_features % ALIGN == 0 and module.out_features % ALIGN == 0)


def quantize_denoiser(module: torch.nn.Module, args: Any) -> int:
    """Quantizes `module`'s large linear layers in place as `args` (a family's args, or their `quantize` value:
    "fp8") say; returns how many. ValueError naming `quantize` where the module's device has no float8 kernels, or
    when no layer qualifies."""
    quantize = getattr(args, "quantize", args)
    device = next(module.parameters()).device
    if not fp8_supported(device):
        raise ValueError(f"quantize: {quantize} needs a CUDA device of compute capability 8.9 or later (Ada, Hopper); "
                         f"the denoiser is on {device}: set quantize: none")
    count = sum(quantizable(layer) for layer in module.modules())
    if not count:
        raise ValueError(f"quantize: {type(module).__name__} has no linear layer of {MIN_FEATURES}+ features")
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError:
        raise ValueError(f"quantize: {quantize} needs torchao: pip install 'montage[fp8]'") from None

    quantize_(module, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=quantizable)
    return count


def relative_error(reference: Any, candidate: Any) -> float:
    """‖candidate − reference‖ / ‖reference‖ in float32 (a forward's first output, or a tensor)."""
    reference, candidate = (_first(value).float() for value in (reference, candidate))
    return float((candidate - reference).norm() / reference.norm().clamp_min(1e-12))


@torch.inference_mode()
def quantized_error(module: torch.nn.Module, inputs: dict[str, Any], quantize: str = "fp8") -> float:
    """Quantizes `module` in place and returns the relative error of one forward on `inputs` against the same
    forward before. On random weights this bounds the arithmetic error only: outliers of trained weights, which
    per-row scales are for, are not in them."""
    reference = _first(module(**inputs)).clone()
    quantize_denoiser(module, quantize)
    return relative_error(reference, module(**inputs))


def _first(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return value[0] if isinstance(value, (tuple, list)) else value.sample
