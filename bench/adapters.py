"""Cost of LoRA adapters per SDXL call, side by side with the base call, in one process:
`python -m bench.adapters [--source tiny|random] [--device auto] [--size 64] [--steps 4] [--repeat 5] [--compile]`;
on a lent GPU: `MONTAGE_BENCH=bench.adapters bash bench/device/run.sh OUT --source random --size 1024 --steps 30
--compile`.

Per-call medians (ms) and their ratio to the base call: `base` (no adapter), `hit` (one loaded adapter again),
`switch` (two loaded adapters in turn: the bank activates the other each call), `rescale` (one adapter, another
scale each call), `cold` (a new adapter each call at capacity 1: load, run, unload). With `--compile` the same again
on the compiled UNet's hot-swap slots, plus the count of graphs compiled after warm-up (0: no recompilation), unless
the eager pass used half of `--budget-s`. Nothing is asserted; figures go to stdout and OUT/adapters.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

def _timed(call, repeat: int) -> float:
    samples = []
    for index in range(repeat):
        started = time.perf_counter()
        call(index)
        samples.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(samples)


def measure(args: argparse.Namespace, compiled: bool) -> dict[str, float]:
    import torch
    from torch._dynamo.utils import counters

    from config.families import AdapterPolicy, SDXLArgs, Source
    from models.adapter_files import write_demo
    from models.sdxl import SDXL
    from models.types import ImageRequest, Lora

    folder = Path(tempfile.mkdtemp(prefix="montage-adapters-"))
    policy = AdapterPolicy(folder=folder, max_loaded=1, max_per_request=1, max_rank=args.rank, demo=False)
    model = SDXL(SDXLArgs(source=Source(args.source), device=args.device, compile=compiled, adapters=policy))
    names = [f"a{index}" for index in range(args.repeat + 2)]
    for seed, name in enumerate(names):
        write_demo(folder / f"{name}.safetensors", model.union.unet, "unet", seed)
    model.warmup()
    graphs = counters["stats"]["unique_graphs"]
    size = dict(width=args.size, height=args.size, steps=args.steps, guidance=5.0, seed=0)

    def run(*loras: Lora) -> None:
        model.run([ImageRequest(prompt="a lighthouse at dusk", loras=loras, **size)])
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    run(Lora(id=names[0]))  # first calls pay one-off costs (allocator, kernels)
    run()
    bank = model.adapters
    figures = dict(base=_timed(lambda i: run(), args.repeat),
                   hit=_timed(lambda i: run(Lora(id=names[0])), args.repeat))
    if not compiled:  # both of `switch`'s adapters stay loaded (the compiled bank's one slot swaps them)
        bank.capacity = 2
    run(Lora(id=names[1]))
    figures["switch"] = _timed(lambda i: run(Lora(id=names[i % 2])), args.repeat)
    figures["rescale"] = _timed(lambda i: run(Lora(id=names[0], scale=0.5 + 0.1 * i)), args.repeat)
    bank.capacity = 1
    figures["cold"] = _timed(lambda i: run(Lora(id=names[2 + i % args.repeat])), args.repeat)
    result = {name: round(ms, 2) for name, ms in figures.items()}
    result |= {f"{name}_ratio": round(ms / figures["base"], 3) for name, ms in figures.items() if name != "base"}
    if compiled:
        result["graphs_after_warmup"] = counters["stats"]["unique_graphs"] - graphs
    result["counts"] = dict(bank.counts)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="tiny", choices=("tiny", "random"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16, help="the adapters' rank limit (the slots' rank)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also the compiled UNet's hot-swap slots")
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    parser.add_argument("--budget-s", type=float, default=1800.0)
    args = parser.parse_args()
    started = time.monotonic()
    result: dict = dict(vars(args), out=str(args.out), eager=measure(args, compiled=False))
    if args.compile and time.monotonic() - started < args.budget_s / 2:
        result["compiled"] = measure(args, compiled=True)
    print(json.dumps(result, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adapters.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
