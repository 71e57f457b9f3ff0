"""One request over several ranks: `python -m bench.parallel [--steps 4]`.

Measured on this CPU (gloo, tiny Wan and FLUX, one process per rank): per layout, the median step time on rank 0 and
the bytes each rank sends per step, counted at the collectives diffusers and `models/parallel.py` call (an all-to-all
sends (n−1)/n of its input, an all-gather its input to n−1 peers, a broadcast's root its tensor to n−1 peers).

Then a MODEL, not a measurement (the machines here have one GPU): a layout's GPU step is the single-GPU step measured
on an H200 (BENCHMARKS.md) divided over the ranks that share its forwards, plus the bytes a rank sends per step (the
same counting, as formulas of the full-size shapes; the formulas are checked against the tiny runs' counts above) at
NVLink and PCIe bandwidths, with no overlap of communication and compute; the work outside the steps (encoders,
VAE decode) runs on rank 0 alone, as measured on one GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
import torch.multiprocessing as mp

from bench.families import png
from config.families import FluxArgs, WanArgs
from config.parallel import ParallelLayout
from models.flux import Flux
from models.parallel import Gang, join
from models.steps import Steps
from models.types import ImageRequest, VideoRequest
from models.wan import Wan

LAYOUTS = {"wan": [{}, {"ulysses": 2}, {"cfg": 2}, {"ulysses": 2, "cfg": 2}],
           "flux": [{}, {"ulysses": 2}]}
GB = 1e9
NVLINK_GBPS = 450.0  # H100/H200 NVLink 4: 900 GB/s both directions together, per GPU
PCIE_GBPS = 50.0  # PCIe Gen5 x16: 64 GB/s a direction, ~50 GB/s achieved


@dataclass(frozen=True)
class Shape:
    """What a denoiser forward's communication depends on."""

    tokens: int  # the sequence the context ranks split (FLUX: image and text tokens)
    out_tokens: int  # the tokens of proj_out's output (FLUX: the image's)
    heads: int
    head_dim: int
    attentions: int  # context-parallel attention calls per forward (Wan: self-attention only)
    out_dim: int  # proj_out's features per token
    inputs: int  # elements rank 0 broadcasts per call (latents, conditioning, embeddings)
    guided: bool  # two forwards a step
    element: int  # bytes


# Full size (bf16), and the tiny shapes of the CPU runs (float32), from the families' configs.
WAN_480P = Shape(tokens=21 * 30 * 52, out_tokens=21 * 30 * 52, heads=40, head_dim=128, attentions=40, out_dim=64,
                 inputs=36 * 21 * 60 * 104 + 512 * 4096 + 257 * 1280, guided=True, element=2)
FLUX_1024 = Shape(tokens=64 * 64 + 512, out_tokens=64 * 64, heads=24, head_dim=128, attentions=57, out_dim=64,
                  inputs=(64 * 64) * 64 + 512 * 4096 + 768 + (64 * 64 + 512) * 3, guided=False, element=2)
SINGLE_GPU = {"wan": dict(step_ms=6641.0, steps=40, rest_s=276.0 - 40 * 6.641, shape=WAN_480P,
                          goal="Wan 480p 81 frames, 40 steps: ≤ 45 s on 8 H200s (U4 × C2)",
                          layouts=[{"ulysses": 4, "cfg": 2}, {"ulysses": 8}, {"ulysses": 2, "ring": 2, "cfg": 2}]),
              "flux": dict(step_ms=174.6, steps=28, rest_s=None, shape=FLUX_1024,
                           goal="FLUX 1024², 28 steps: ≤ 1.2 s on 4 (U4)",
                           layouts=[{"ulysses": 4}, {"ulysses": 2, "ring": 2}])}


def sent_per_step(shape: Shape, layout: ParallelLayout) -> dict[str, float]:
    """Bytes one rank sends per step, by kind (rank 0 also broadcasts each call's inputs)."""
    u, r, c, e = layout.ulysses, layout.ring, layout.cfg, shape.element
    forwards = (2 if shape.guided else 1) / (c if shape.guided else 1)  # this rank's forwards a step
    shard = shape.tokens / (u * r)
    activation = shard * shape.heads * shape.head_dim * e
    sent = {
        "ulysses": forwards * shape.attentions * 4 * activation * (u - 1) / u,
        "ring": forwards * shape.attentions * 2 * activation * (r - 1),  # K, V of S/R tokens × H/U heads
        "gather": forwards * shape.out_tokens / (u * r) * shape.out_dim * e * (u * r - 1),
        "cfg": shape.out_tokens * shape.out_dim * e * (c - 1) if shape.guided else 0.0,
        "inputs (rank 0)": (2 if shape.guided else 1) * shape.inputs * e * (layout.degree - 1),
    }
    return {kind: bytes_ for kind, bytes_ in sent.items() if layout.degree > 1}


@contextlib.contextmanager
def counting() -> Iterator[list[float]]:
    """Bytes this rank sends through the collectives while inside."""
    sent = [0.0]
    originals = (funcol.all_to_all_single, funcol.all_gather_tensor, dist.all_gather, dist.broadcast)

    def size(group) -> int:
        return group.size() if hasattr(group, "size") else dist.get_world_size(group)

    def all_to_all(x, output_split_sizes, input_split_sizes, group, *args, **kwargs):
        n = size(group)
        sent[0] += x.numel() * x.element_size() * (n - 1) / n
        return originals[0](x, output_split_sizes, input_split_sizes, group, *args, **kwargs)

    def gather_tensor(x, gather_dim, group, *args, **kwargs):
        sent[0] += x.numel() * x.element_size() * (size(group) - 1)
        return originals[1](x, gather_dim, group, *args, **kwargs)

    def gather(outputs, x, group=None, *args, **kwargs):
        sent[0] += x.numel() * x.element_size() * (size(group) - 1)
        return originals[2](outputs, x, group, *args, **kwargs)

    def broadcast(x, src, *args, **kwargs):
        if dist.get_rank() == src:
            sent[0] += x.numel() * x.element_size() * (dist.get_world_size() - 1)
        return originals[3](x, src, *args, **kwargs)

    funcol.all_to_all_single, funcol.all_gather_tensor, dist.all_gather, dist.broadcast = (
        all_to_all, gather_tensor, gather, broadcast)
    try:
        yield sent
    finally:
        funcol.all_to_all_single, funcol.all_gather_tensor, dist.all_gather, dist.broadcast = originals


def tiny(name: str) -> tuple[object, Callable[[Steps], object], Shape]:
    """A tiny family, one run of its test request, and its shape (float32)."""
    if name == "wan":
        model = Wan(WanArgs(device="cpu"))
        request = VideoRequest(image=png(), prompt="a cat", width=64, height=64, steps=STEPS, guidance=5.0, seed=0,
                               num_frames=9, fps=16, gif=False)
        shape = Shape(tokens=3 * 4 * 4, out_tokens=3 * 4 * 4, heads=2, head_dim=12, attentions=2, out_dim=64,
                      inputs=36 * 3 * 8 * 8 + 512 * 32 + 1025 * 4 + 1, guided=True, element=4)
        return model, lambda steps: model.run([request], steps), shape
    model = Flux(FluxArgs(device="cpu", max_sequence_length=64))
    request = ImageRequest(prompt="a red fox", width=64, height=64, steps=STEPS, guidance=3.5, seed=0)
    shape = Shape(tokens=16 + 64, out_tokens=16, heads=2, head_dim=16, attentions=2, out_dim=4,
                  inputs=16 * 4 + 64 * 32 + 32 + 80 * 3 + 1, guided=False, element=4)
    return model, lambda steps: model.run([request], steps), shape


STEPS = 4


def rank_main(rank: int, world: int, store: str, name: str, layout: dict, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model, run, _ = tiny(name)
    gang = Gang(ParallelLayout(**layout), torch.device("cpu"))
    join(model, gang)
    if rank == 0:
        run(None)  # warm-up
        with counting() as sent:
            marks = [time.perf_counter()]
            run(Steps(on_step=lambda _: marks.append(time.perf_counter())))
        gang.stop()
    else:
        with counting() as sent:
            gang.follow()  # the warm-up's bytes too: halved below by counting both runs
        marks = []
    runs = 1 if rank == 0 else 2
    Path(out, f"{rank}.json").write_text(json.dumps(dict(sent=sent[0] / runs / STEPS, marks=marks)))
    dist.destroy_process_group()


def single_step_ms(name: str) -> float:
    torch.set_num_threads(1)
    _, run, _ = tiny(name)
    run(None)
    marks = [time.perf_counter()]
    run(Steps(on_step=lambda _: marks.append(time.perf_counter())))
    return statistics.median(b - a for a, b in zip(marks, marks[1:])) * 1000.0


def measure(name: str, layout: dict) -> dict:
    degree = ParallelLayout(**layout).degree
    if degree == 1:
        return dict(step_ms=single_step_ms(name), sent=[0.0])
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(rank_main, args=(degree, f"{folder}/store", name, layout, folder), nprocs=degree,
                           start_method="spawn")
        found = [json.loads(Path(folder, f"{rank}.json").read_text()) for rank in range(degree)]
    marks = found[0]["marks"]
    return dict(step_ms=statistics.median(b - a for a, b in zip(marks, marks[1:])) * 1000.0,
                sent=[f["sent"] for f in found])


def label(layout: dict) -> str:
    return " × ".join(f"{k[0].upper()}{v}" for k, v in layout.items()) or "single"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    options = parser.parse_args()
    print("## Measured on this CPU (gloo, tiny models, float32, one torch thread per rank)\n")
    print("| family | layout | ranks | step ms (rank 0) | KB sent / step: rank 0 | other ranks | model: rank 0 | "
          "other ranks |")
    print("|---|---|---|---|---|---|---|---|")
    for name in options.families:
        shape = tiny(name)[2]
        for layout in LAYOUTS[name]:
            found = measure(name, layout)
            modelled = sent_per_step(shape, ParallelLayout(**layout))
            rank0 = sum(modelled.values())
            others = rank0 - modelled.get("inputs (rank 0)", 0.0)
            rest = found["sent"][1:] or [0.0]
            print(f"| {name} | {label(layout)} | {ParallelLayout(**layout).degree} | {found['step_ms']:.1f} | "
                  f"{found['sent'][0] / 1e3:.1f} | {max(rest) / 1e3:.1f} | {rank0 / 1e3:.1f} | {others / 1e3:.1f} |")
    print("\n## MODEL of GPU latency (not measured: one-GPU machines only)\n")
    print("| family | layout | GPUs | compute ms/step | GB sent/step (rank 0) | NVLink step ms | PCIe step ms | "
          "NVLink total s | PCIe total s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in options.families:
        gpu = SINGLE_GPU[name]
        for layout in [{}, *gpu["layouts"]]:
            parallel = ParallelLayout(**layout)
            compute = gpu["step_ms"] / parallel.degree
            sent = sum(sent_per_step(gpu["shape"], parallel).values()) / GB
            steps = {bw: compute + sent / bw * 1000.0 for bw in (NVLINK_GBPS, PCIE_GBPS)}
            rest = gpu["rest_s"] or 0.0
            total = {bw: rest + gpu["steps"] * ms / 1000.0 for bw, ms in steps.items()}
            print(f"| {name} | {label(layout)} | {parallel.degree} | {compute:.1f} | {sent:.2f} | "
                  f"{steps[NVLINK_GBPS]:.1f} | {steps[PCIE_GBPS]:.1f} | {total[NVLINK_GBPS]:.1f} | "
                  f"{total[PCIE_GBPS]:.1f} |")
        print(f"\ngoal: {gpu['goal']}" + ("" if gpu["rest_s"] else " (steps only: FLUX's encode and decode are "
                                                                    "not in the measured step)"))


if __name__ == "__main__":
    main()
