"""Kernel facts before model work: `python -m bench.probe [--out DIR]` (about 90 s on an H200, no model builds).

1. SDPA at every family's serving attention shapes: which kernel runs by default (the profiler's kernel names on
   CUDA), and the time, TFLOP/s and relative error against fp32 math of the default and of each backend that runs
   (flash, cuDNN, memory-efficient; on a CPU, math and flash); the carried `fa3_fwd` wheel too where installed.
2. bf16 GEMM against fp8 e4m3 with per-row scales (`torch._scaled_mm`, the kernel torchao's float8 dynamic rowwise
   config lowers to) at the families' large linear shapes, with and without the activation's quantisation.

Rows go to `OUT/probe.jsonl` and a table to stdout. Smoke mode on a CPU: `--device cpu --scale 0.02` divides
sequence lengths and GEMM rows by 50, so every code path runs in seconds (its figures are no GPU's).
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.gpu_timing import sync
from bench.stats import median

# name: (batch, heads, query length, key length, head dim) at each family's serving size
ATTENTION = {
    "flux_1024": (1, 24, 4608, 4608, 128),
    "kontext_1024": (1, 24, 8704, 8704, 128),
    "wan_self_480p81": (1, 40, 32760, 32760, 128),
    "wan_cross_text": (1, 40, 32760, 512, 128),
    "sdxl_l1": (2, 10, 4096, 4096, 64),
    "sdxl_l2": (2, 20, 1024, 1024, 64),
    "svd_spatial_l1": (50, 5, 9216, 9216, 64),
    "svd_temporal_l1": (2 * 9216, 5, 25, 25, 64),
}
# name: (M, K, N)
GEMM = {
    "flux_mlp_up": (4608, 3072, 12288),
    "flux_single_out": (4608, 15360, 3072),
    "wan_ffn_up": (32760, 5120, 13824),
    "wan_qkv": (32760, 5120, 15360),
    "sdxl_ff_up_l2": (8192, 1280, 10240),
    "qwen_mlp_decode_b16": (16, 1536, 17920),
}
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
E4M3 = torch.float8_e4m3fn


def timed_ms(call: Callable[[], Any], device: torch.device, reps: int) -> float:
    """Median milliseconds of `reps` synchronised calls after 2 warm-ups."""
    for _ in range(2):
        call()
    times = []
    for _ in range(reps):
        sync(device)
        started = time.perf_counter()
        call()
        sync(device)
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


def relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return ((out.float() - reference.float()).norm() / reference.float().norm()).item()


def scaled(length: int, scale: float) -> int:
    return max(16, int(length * scale) // 16 * 16)


def default_kernels(device: torch.device, dtype: torch.dtype) -> list[str]:
    """The kernels the profiler sees for one default SDPA call at FLUX's shape (CUDA only)."""
    if device.type != "cuda":
        return []
    q = torch.randn(1, 24, 4608, 128, device=device, dtype=dtype)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        F.scaled_dot_product_attention(q, q, q)
        sync(device)
    return sorted({e.name for e in profile.events() if any(word in e.name.lower() for word in (
        "sdpa", "flash", "fmha", "attention", "cudnn"))})[:6]


def fa3() -> Callable[..., Any] | None:
    """FlashAttention-3's forward from the `fa3_fwd` wheel (bf16 and fp8, sm90), where installed."""
    try:
        import fa3_fwd_interface
    except ImportError:
        return None
    return fa3_fwd_interface.flash_attn_func


def attention(device: torch.device, dtype: torch.dtype, scale: float, reps: int) -> list[dict[str, Any]]:
    rows, flash3 = [], fa3() if device.type == "cuda" else None
    backends = ("flash", "cudnn", "efficient") if device.type == "cuda" else ("math", "flash")
    for name, (batch, heads, q_len, kv_len, dim) in ATTENTION.items():
        if scale < 1:
            batch, q_len, kv_len = min(batch, 2), scaled(q_len, scale), scaled(kv_len, scale)
        generator = torch.Generator(device).manual_seed(0)
        q, k, v = (torch.randn(batch, heads, length, dim, device=device, dtype=dtype, generator=generator)
                   for length in (q_len, kv_len, kv_len))
        flops = 4 * batch * heads * q_len * kv_len * dim
        sliced = q[:1, :, :1024]  # fp32 math on a slice of queries: the whole of Wan's would not fit
        reference = F.scaled_dot_product_attention(sliced.float(), k[:1].float(), v[:1].float())
        shape = dict(kind="attention", shape=name, dims=[batch, heads, q_len, kv_len, dim])
        for label in ("default", *backends):
            def call(on=None if label == "default" else BACKENDS[label], q=q, k=k, v=v):
                if on is None:
                    return F.scaled_dot_product_attention(q, k, v)
                with sdpa_kernel(on):
                    return F.scaled_dot_product_attention(q, k, v)
            try:
                ms = timed_ms(call, device, reps)
                error = relative_error(call(q=sliced, k=k[:1], v=v[:1]), reference)
            except RuntimeError as exc:  # the backend does not serve this shape or device
                rows.append(shape | dict(impl=label, error=str(exc).splitlines()[0][:120]))
                continue
            rows.append(shape | dict(impl=label, ms=ms, tflops=flops / ms / 1e9, rel_err=error))
        if flash3 is not None:
            layout = [x.transpose(1, 2).contiguous() for x in (q, k, v)]  # FlashAttention's (B, L, H, D)
            for label, kind in (("fa3_bf16", torch.bfloat16), ("fa3_fp8_unscaled", E4M3)):
                a, b, c = (x.to(kind) for x in layout)
                ms = timed_ms(lambda a=a, b=b, c=c: flash3(a, b, c), device, reps)
                out = flash3(a[:1, :1024], b[:1], c[:1])
                out = out[0] if isinstance(out, tuple) else out
                rows.append(shape | dict(impl=label, ms=ms, tflops=flops / ms / 1e9,
                                         rel_err=relative_error(out.transpose(1, 2), reference)))
        del q, k, v
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def rowwise_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x in e4m3 with one scale per row (what torchao's float8 dynamic rowwise config computes)."""
    scale = (x.abs().amax(dim=1, keepdim=True).float() / torch.finfo(E4M3).max).clamp(min=1e-12)
    return (x / scale).to(E4M3), scale


def gemm(device: torch.device, dtype: torch.dtype, scale: float, reps: int) -> list[dict[str, Any]]:
    rows = []
    for name, (m, k, n) in GEMM.items():
        if scale < 1:
            m, k, n = scaled(m, scale), scaled(k, scale * 4), scaled(n, scale * 4)
        generator = torch.Generator(device).manual_seed(1)
        x = torch.randn(m, k, device=device, dtype=dtype, generator=generator)
        w = torch.randn(n, k, device=device, dtype=dtype, generator=generator) * 0.02
        flops, reference = 2 * m * k * n, x.float() @ w.float().t()
        shape = dict(kind="gemm", shape=name, dims=[m, k, n])
        ms = timed_ms(lambda: x @ w.t(), device, reps)
        rows.append(shape | dict(impl="bf16", ms=ms, tflops=flops / ms / 1e9,
                                 rel_err=relative_error(x @ w.t(), reference)))
        w8, w_scale = rowwise_fp8(w)
        w_scale = w_scale.t().contiguous()  # (1, N): one scale per output column
        x8, x_scale = rowwise_fp8(x)

        def fp8() -> torch.Tensor:
            return torch._scaled_mm(x8, w8.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=dtype)

        def fp8_with_quantisation() -> torch.Tensor:
            quantised, row_scale = rowwise_fp8(x)
            return torch._scaled_mm(quantised, w8.t(), scale_a=row_scale, scale_b=w_scale, out_dtype=dtype)

        with_quantisation = torch.compile(fp8_with_quantisation) if device.type == "cuda" else fp8_with_quantisation
        for label, call in (("fp8_rowwise", fp8), ("fp8_rowwise_with_quantisation", with_quantisation)):
            try:
                ms = timed_ms(call, device, reps)
            except RuntimeError as exc:
                rows.append(shape | dict(impl=label, error=str(exc).splitlines()[0][:120]))
                continue
            rows.append(shape | dict(impl=label, ms=ms, tflops=flops / ms / 1e9,
                                     rel_err=relative_error(call(), reference)))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'kind':10} {'shape':20} {'impl':30} {'ms':>9} {'TFLOP/s':>8} {'rel err':>9}"]
    for row in rows:
        head = f"{row['kind']:10} {row['shape']:20} {row['impl']:30}"
        lines.append(f"{head} ERROR {row['error']}" if "error" in row else
                     f"{head} {row['ms']:9.3f} {row['tflops']:8.1f} {row['rel_err']:9.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the serving lengths (smoke: 0.02)")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("var/bench/probe"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16
    environment = dict(kind="environment", device=torch.cuda.get_device_name(device) if device.type == "cuda"
                       else "cpu", torch=torch.__version__, cuda=torch.version.cuda,
                       cudnn=torch.backends.cudnn.version() if device.type == "cuda" else None,
                       default_sdpa_kernels=default_kernels(device, dtype), scale=args.scale)
    rows = [environment, *attention(device, dtype, args.scale, args.reps), *gemm(device, dtype, args.scale, args.reps)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(json.dumps(environment))
    print(table(rows[1:]), flush=True)
    return rows


if __name__ == "__main__":
    main()
