"""The GPU suite, sized for a short GPU window: `python -m bench.gpu [--budget-s 420] [--workloads sdxl flux ...]`.

Every workload (bench/gpu_workloads.py) runs in its own process, so its memory figures are its own: the plain
diffusers/transformers baseline, then the Montage model class path, each on freshly built full-size random bf16
weights (`random` source). Neither runs a whole request: one call of a few steps gives

- the per-step time (median between `callback_on_step_end` calls, device synchronised, after one warm-up step);
- the fixed parts, timed once: before the first step (text and image encoding, latents; the warm-up step's extra
  cost is counted here) and after the last (VAE decode), and on both paths the media encode (PNG, or MP4 where
  imageio-ffmpeg is installed);
- end-to-end, **extrapolated**: before + steps × per-step + after + encode (each row's `e2e_parts` says which parts
  it adds up: no encode where the machine has no encoder); a decode workload warms up with the same call it times,
  on every path;
- the FLOPs of one step, counted with `FlopCounterMode` over one more step of the baseline call, and the floor they
  give over the bf16 matmul rate measured here;
- memory in GiB: reserved by the caching allocator after construction (what other processes cannot use), the peak
  reserved during the call, and the device memory in use after construction (CUDA context included).

Each process first runs matmuls for a moment, so the path measured first does not pay the GPU's warm-up.

Rows go to `OUT/gpu.jsonl` as soon as each workload is measured (each row with its workload's measured duration,
`workload_s`), and the table to `OUT/gpu.md` after each one. With `--budget-s`, a workload whose expected duration
exceeds the time left is skipped and listed as such; expected is what an earlier run on this kind of device measured
(`--durations ITS/gpu.jsonl`), else, on CUDA with full-size weights, the static H200 estimates of
bench/gpu_workloads.py. Smoke mode on a CPU: `--device cpu --source tiny`.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bench.gpu_timing import sync, timed_call, token_call, token_flops
from bench.gpu_workloads import WORKLOADS, Workload, production_args
from config.families import Source

OUT = Path("var/bench/gpu")
GIB = 2**30


def matmul_rate(device: torch.device, dtype: torch.dtype, iters: int = 20) -> float:
    """FLOP/s of a large square matmul on random data (8192² on CUDA, 512² on a CPU)."""
    n = 8192 if device.type == "cuda" else 512
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - started)


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and the device, for the record."""
    import diffusers
    import transformers

    env = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
               diffusers=diffusers.__version__, transformers=transformers.__version__, device=str(device))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1), sms=props.multi_processor_count)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            env["driver"] = None
    return env


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def memory(device: torch.device) -> dict[str, float]:
    """GiB: reserved now and at its peak, and in use on the device (CUDA); the process's peak RSS on a CPU."""
    if device.type != "cuda":
        return dict(peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB)
    free, total = torch.cuda.mem_get_info(device)
    return dict(reserved_gib=torch.cuda.memory_reserved(device) / GIB,
                peak_reserved_gib=torch.cuda.max_memory_reserved(device) / GIB, device_used_gib=(total - free) / GIB)


def measure_path(workload: Workload, path: str, build: Callable[[], Any], call: Callable[[Any, dict, Any], Any],
                 fields: dict, device: torch.device, timed: int, count_flops: bool) -> dict[str, Any]:
    """Builds one path and runs its short call: its row, with `step_flops` when `count_flops`."""
    release(device)
    started = time.perf_counter()
    model = build()
    sync(device)
    built = memory(device)
    row: dict[str, Any] = dict(workload=workload.name, path=path, steps=fields["steps"], goal=workload.goal,
                               build_s=time.perf_counter() - started, resident_gib=built.get("reserved_gib"),
                               device_used_gib=built.get("device_used_gib"))
    bound = partial(call, model)
    if path == "montage" and hasattr(model, "warmup"):  # what a replica does before it takes requests
        warm_started = time.perf_counter()
        model.warmup()
        sync(device)
        row["warmup_s"] = time.perf_counter() - warm_started
    if workload.tokens:
        row |= token_call(bound, fields, device) | dict(e2e_parts="prefill + decode")
        if count_flops:
            row["step_flops"] = token_flops(bound, fields)
    else:
        timing = timed_call(bound, fields, timed, device, count_flops)
        row |= timing.figures(timed, fields["steps"]) | dict(timed_steps=timed)
        if count_flops:
            row["step_flops"] = timing.step_flops
        row |= encode_figures(workload, timing.output, fields, row["e2e_s"])
    row |= {k: v for k, v in memory(device).items() if k.startswith("peak")}
    del model, bound
    release(device)
    return row


def encode_figures(workload: Workload, output: Any, fields: dict, e2e_s: float) -> dict[str, Any]:
    """The media encode of a call's output (PNG, or MP4 where imageio-ffmpeg is installed), timed on either path
    and added to its end-to-end time; `e2e_parts` names what that time adds up."""
    parts = "before + steps × step + after"
    encoded, started = None, time.perf_counter()
    if workload.encode is not None:
        encoded = workload.encode(output, fields)
    if encoded is None:
        return dict(encode_s=None, e2e_parts=parts + ("" if workload.encode is None else ", no encoder here"))
    encode_s = time.perf_counter() - started
    return dict(encode_s=encode_s, e2e_s=e2e_s + encode_s, e2e_parts=parts + " + encode")


def measure(workload: Workload, source: Source, device: torch.device, dtype: torch.dtype, timed: int,
            rate: float, emit: Callable[[dict], None]) -> None:
    """Baseline (when the workload has one, counting the step FLOPs), then the Montage path; never resident
    together. A workload without a baseline (a compiled variant) has no floor of its own: see its eager row."""
    fields = workload.fields(source)
    paths = []
    if workload.baseline is not None:
        paths.append(("baseline", partial(workload.baseline, source, device, dtype), workload.call_baseline))
    args = production_args(workload.family, source, str(device), str(dtype).removeprefix("torch.")) | workload.args
    paths.append(("montage", partial(workload.montage, args, fields), workload.call_montage))
    flops = None
    for path, build, call in paths:
        row = measure_path(workload, path, build, call, fields, device, timed, count_flops=path == "baseline")
        flops = row.pop("step_flops", None) or flops
        floor_ms = flops / rate * 1000.0 if flops else None
        emit(row | dict(device=str(device), step_flops=flops, floor_ms_per_step=floor_ms,
                        floor_share=floor_ms / row["per_step_ms"] if floor_ms else None))


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render(rows: list[dict], env: dict) -> str:
    """The markdown table of BENCHMARKS.md."""
    lines = [f"{env.get('gpu', env.get('device'))}; torch {env.get('torch')} (CUDA {env.get('cuda')}), diffusers "
             f"{env.get('diffusers')}, transformers {env.get('transformers')}, driver {env.get('driver')}; bf16 "
             f"matmul {_fmt(env.get('matmul_tflops'), '.0f')} TFLOP/s",
             "",
             "| workload | path | e2e s (extrap.) | step ms | before s | after s | encode s | floor ms | floor % "
             "| resident GiB | peak GiB | device GiB | build (+ warm-up) s | goal |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['workload']} | — | skipped: {r['skipped']} |" + " |" * 11)
            continue
        goal = r["goal"] + (f" ({r['tokens_per_s']:.0f} tok/s)" if "tokens_per_s" in r else "")
        peak = r.get("peak_reserved_gib", r.get("peak_rss_gib"))
        warmup = f" + {r['warmup_s']:.0f}" if r.get("warmup_s", 0) > 0.5 else ""
        lines.append(
            f"| {r['workload']} | {r['path']} | {r['e2e_s']:.3f} | {r['per_step_ms']:.2f} | "
            f"{_fmt(r.get('before_s'), '.3f')} | {_fmt(r.get('after_s'), '.3f')} | {_fmt(r.get('encode_s'), '.3f')} | "
            f"{_fmt(r['floor_ms_per_step'], '.2f')} | {_fmt(r['floor_share'], '.0%')} | "
            f"{_fmt(r.get('resident_gib'), '.2f')} | {_fmt(peak, '.2f')} | {_fmt(r.get('device_used_gib'), '.2f')} | "
            f"{r['build_s']:.1f}{warmup} | {goal} |")
    return "\n".join(lines)


def child_parser() -> argparse.ArgumentParser:
    """What every suite's child (`python -m module --child name ...`, `run_child`) is told."""
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--device")
    parser.add_argument("--source", type=Source)
    parser.add_argument("--timed-steps", type=int)
    return parser


def emit(row: dict) -> None:
    """A child's row, for `run_child` to read; then what the measured path left is collected."""
    print("ROW " + json.dumps(row), flush=True)
    gc.collect()


def child(argv: list[str]) -> None:
    """One workload (or `matmul`) in this process; JSON lines on stdout."""
    parser = child_parser()
    parser.add_argument("--rate", type=float)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.name == "matmul":
        emit(environment(device) | dict(matmul_tflops=matmul_rate(device, dtype) / 1e12))
        return
    workload = WORKLOADS[args.name]
    matmul_rate(device, dtype, iters=100)  # clocks and library heuristics up before the first path, not during it
    timed = args.timed_steps or (workload.timed_steps if args.source is Source.RANDOM else 2)
    measure(workload, args.source, device, dtype, timed, args.rate * 1e12, emit)


def run_child(module: str, name: str, args: argparse.Namespace, timeout: float,
              extra: tuple[str, ...] = ()) -> tuple[list[dict], str | None]:
    """Rows a child (`python -m module --child name ...`) printed, and why it stopped early (None when it finished)."""
    command = [sys.executable, "-m", module, "--child", name, "--device", args.device, "--source", args.source.value,
               *extra]
    rows: list[dict] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        expired = threading.Event()
        timer = threading.Timer(timeout, lambda: (expired.set(), process.kill()))
        timer.start()
        try:
            for line in process.stdout:
                if line.startswith("ROW "):
                    rows.append(json.loads(line[4:]))
                else:
                    print(f"  [{name}] {line.rstrip()}", flush=True)
            code = process.wait()
        finally:
            timer.cancel()
            process.kill()
    if expired.is_set():
        return rows, f"stopped: budget spent after {timeout:.0f} s"
    return rows, f"exit {code}" if code else None


def run_workload(module: str, name: str, args: argparse.Namespace, left: float, estimate: float,
                 extra: tuple[str, ...], record: Callable[[list[dict]], None],
                 unreached: Callable[[list[dict], str], list[dict]]) -> None:
    """One workload's child within the time left (at most 600 s): its rows, and `unreached(rows, why)` where it
    stopped early, recorded with the workload's duration (`workload_s`); a line printed."""
    workload_started = time.monotonic()
    new, error = run_child(module, name, args, timeout=min(left, 600.0), extra=extra)
    if error:
        new += unreached(new, error)
    took = round(time.monotonic() - workload_started, 1)
    record([row | dict(workload_s=took) for row in new])
    print(f"{name}: {took:.0f} s" + (f" (expected {estimate:.0f} s)" if estimate else "") +
          (f", {error}" if error else ""), flush=True)


def environment_row(args: argparse.Namespace) -> dict:
    """The device's environment and bf16 matmul rate, measured in a child process of their own."""
    rows, error = run_child("bench.gpu", "matmul", args, timeout=300, extra=("--rate", "0"))
    if error or not rows:
        raise SystemExit(f"matmul/environment child failed: {error}")
    return rows[0]


def suite_parser(doc: str, workloads: list[str]) -> argparse.ArgumentParser:
    """The options the GPU suites share: --device, --source, --workloads, --out."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--source", type=Source, choices=[Source.RANDOM, Source.TINY], default=Source.RANDOM)
    parser.add_argument("--workloads", nargs="+", choices=workloads, default=workloads)
    parser.add_argument("--out", type=Path, default=OUT)
    return parser


def measured_durations(path: Path) -> dict[str, float]:
    """Each workload's measured duration (`workload_s`, its process from start to end) in an earlier run's rows."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["workload"]: row["workload_s"] for row in rows if "workload_s" in row}


def estimates(names: list[str], durations: dict[str, float] | None) -> dict[str, float]:
    """Each workload's expected duration: measured in an earlier run on this kind of device (`durations`), else the
    static H200 estimate of bench/gpu_workloads.py."""
    durations = durations or {}
    return {name: durations.get(name, WORKLOADS[name].estimate_s) for name in names}


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return []
    parser = suite_parser(__doc__, list(WORKLOADS))
    parser.add_argument("--timed-steps", type=int, help="steps timed after the warm-up one (default per workload)")
    parser.add_argument("--budget-s", type=float, help="skip workloads whose estimate exceeds the time left")
    parser.add_argument("--durations", type=Path, help="an earlier run's gpu.jsonl on this kind of device: its "
                                                       "measured workload durations are the estimates")
    args = parser.parse_args(argv)
    started = time.monotonic()
    durations = measured_durations(args.durations) if args.durations else None
    # the static estimates are H200 figures: they count only there, measured durations on any device
    expected = estimates(args.workloads, durations) \
        if durations or (args.device.startswith("cuda") and args.source is Source.RANDOM) else None
    if expected:
        print(f"expected duration: {sum(expected.values()):.0f} s for {', '.join(args.workloads)} "
              f"({'measured in ' + str(args.durations) if durations else 'H200 estimates'})", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl, table = args.out / "gpu.jsonl", args.out / "gpu.md"
    jsonl.write_text("")
    env = environment_row(args)
    print(json.dumps(env), flush=True)
    rows: list[dict] = []

    def record(new: list[dict]) -> None:
        rows.extend(new)
        with jsonl.open("a") as handle:
            for row in new:
                handle.write(json.dumps(row) + "\n")
        table.write_text(render(rows, env) + "\n")

    for name in args.workloads:
        left = args.budget_s - (time.monotonic() - started) if args.budget_s else float("inf")
        estimate = expected[name] if expected else 0.0
        if estimate > left:
            record([dict(workload=name, skipped=f"estimate {estimate:.0f} s > {left:.0f} s left")])
            print(f"{name}: skipped, estimate {estimate:.0f} s > {left:.0f} s left", flush=True)
            continue
        extra = ("--rate", str(env["matmul_tflops"])) + (("--timed-steps", str(args.timed_steps))
                                                         if args.timed_steps else ())
        run_workload("bench.gpu", name, args, left, estimate, extra, record,
                     lambda new, error: [dict(workload=name, skipped=error)])
    print(f"total {time.monotonic() - started:.0f} s")
    print(render(rows, env))
    return rows


if __name__ == "__main__":
    main()
