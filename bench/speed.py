"""The one device run of issue #29: `python -m bench.speed [--budget-s 440]` (`bench/device/run.sh OUT` runs the
kernel probe first, then this; ≤ 9 minutes in all).

Each family workload runs in its own process, its paths side by side on full-size random bf16 weights through the
Montage model class with the production args (config/serve/h200.yaml):

- `eager`: as served today;
- `compiled`: a build with `compile` (regional torch.compile), warmed up as a replica starts;
- `cache`: that compiled model, its request with `acceleration: "step_cache"`, run whole (all its steps; the
  result's `steps_skipped` where the family reports it);
- `graphs`: that compiled model with CUDA graphs of its denoiser (`models/graphs.py`) installed and warmed up;
- `fp8`: a new build with `compile` and `quantize: "fp8"`.

A path a family does not take is listed with why, as is one whose field (`quantize`, `acceleration`) this branch
lacks. Exact paths give the suite's extrapolated end-to-end (bench/gpu.py: before + steps × median step + after +
encode; build_s includes the warm-up); the cache path its measured whole call. Then:

- `batching` (bench/step_batching.py; SDXL at the workload size, compiled with graphs): 8 one-image requests
  arriving 200 ms apart through the replica's admission (`deployments/admission.py`) and step scheduler: images/s one at a time (one group, no
  joining), with request-level batching (one group at a time, up to 8 requests), and continuous batching (a group
  per request, joining at step boundaries); and two groups of different shapes taking turns against one after the
  other (BENCHMARKS.md's 0.67× case);
- `llm`: `bench.llm` (the decode engine against `generate`, 1, 4 and 16 concurrent requests).

A workload whose estimate (H200, ESTIMATES) exceeds the time left is skipped and listed. Rows go to
`OUT/speed.jsonl` (`workload`, `path`, `e2e_s`, `tokens_per_s` for the LLM, `device`, `goal`, `met`, ...) and the
table with goal and met columns to `OUT/speed.md` after each workload. `python -m bench.speed --notes OUT` copies
the rows to `bench/notes/<date>-<card>-speed.jsonl`. Smoke mode on a CPU: `--device cpu --source tiny`.
"""
from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.gpu import (child_parser, emit, environment_row, measure_path, memory, release, run_workload,
                       suite_parser)
from bench.gpu_timing import sync
from bench.gpu_workloads import WORKLOADS, production_args
from config.families import Source

PATHS = ("eager", "compiled", "graphs", "fp8", "cache", "gang1")
FAMILIES = {  # workload: the paths it takes
    "sdxl": ("eager", "compiled", "graphs"),
    "sdxl_union": ("eager", "compiled", "graphs"),
    "flux": ("eager", "compiled", "fp8", "cache", "gang1"),
    "flux_kontext": ("eager", "compiled", "fp8", "cache"),
    "svd": ("eager", "compiled", "graphs"),
    "wan": ("eager", "compiled", "fp8", "cache", "gang1"),
}
NOT_TAKEN = {"graphs": "CUDA graphs are for the launch-bound families (SDXL, SVD)",
             "fp8": "fp8 weights are for FLUX, Kontext and Wan",
             "cache": "the step cache is for FLUX, Kontext and Wan requests (no diffusers cache hook fits SVD's UNet)",
             "gang1": "gangs (parallel layouts) are FLUX's and Wan's"}
# Seconds on one H200 for the whole workload (process, builds, warm-ups, calls): guesses until a run measures them
# (its rows' workload_s); the order is what runs first under a budget.
ESTIMATES = dict(sdxl=60, sdxl_union=65, batching=60, llm=45, flux=240, svd=150, flux_kontext=250, wan=500)
PLAN = list(ESTIMATES)
# workload: {path: goal}, "*" for every path without its own (seconds end to end; ratios for batching; tok/s)
GOALS: dict[str, dict[str, float]] = {
    "sdxl": {"*": 0.9}, "sdxl_union": {"*": 1.3}, "flux": {"*": 3.3, "fp8": 2.7}, "flux_kontext": {"*": 7.0},
    "svd": {"*": 11.0, "cache": 8.0}, "wan": {"*": 200.0, "cache": 100.0},
    "batching": {"continuous_vs_one_at_a_time": 1.5, "turns_vs_one_after_the_other": 0.95},
    "llm": {"engine_x1": 300.0, "engine_x16": 2000.0},
}


def goal_of(workload: str, path: str) -> float | None:
    """The goal of a row: its path's, else its workload's; none for a family's extra rows (decode sweeps)."""
    goals = GOALS.get(workload, {})
    if workload in FAMILIES and path not in PATHS:
        return None
    return goals.get(path, goals.get("*"))


def judged(row: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """The row with its `goal` and whether it `met` it (on CUDA only: the tiny CPU figures meet nothing)."""
    goal = goal_of(row["workload"], row["path"])
    if goal is None or "skipped" in row:
        return row | dict(goal=goal, met=None)
    if row["workload"] == "llm":
        value, met = row["tokens_per_s"], row["tokens_per_s"] >= goal
    elif row["workload"] == "batching":
        value, met = row["ratio"], row["ratio"] >= goal
    else:
        value, met = row["e2e_s"], row["e2e_s"] <= goal
    return row | dict(goal=goal, met=met if cuda and value is not None else None)


# One family workload's paths.

def _args_class(family: str) -> type:
    from config.families import FluxArgs, SDXLArgs, SVDArgs, WanArgs

    return dict(sdxl=SDXLArgs, flux=FluxArgs, svd=SVDArgs, wan=WanArgs)[family]


def _result_call(model: Any, name: str, fields: dict) -> Any:
    """The workload's request through the family's result-returning operation (metadata included)."""
    from bench.gpu_workloads import _edit_request, _image_request, _video_request

    if WORKLOADS[name].family in ("svd", "wan"):
        return model.animate([_video_request(fields)])
    if fields.get("edit"):
        return model.edit([_edit_request(fields)])
    return model.generate([_image_request(fields)])


def cache_row(name: str, model: Any, fields: dict, device: torch.device) -> dict[str, Any]:
    """The compiled model's request with the step cache, all its steps, timed whole (a first call warms it)."""
    fields = dict(fields, acceleration="step_cache")
    _result_call(model, name, dict(fields, steps=2))
    sync(device)
    started = time.perf_counter()
    results = _result_call(model, name, fields)
    sync(device)
    return dict(e2e_s=time.perf_counter() - started, steps=fields["steps"], e2e_parts="measured whole call",
                steps_skipped=results[0].metadata.steps_skipped)


def family_child(name: str, source: Source, device: torch.device, dtype: torch.dtype, timed: int, paths: list[str],
                 emit: Any) -> None:
    workload = WORKLOADS[name]
    fields = workload.fields(source)
    base = production_args(workload.family, source, str(device), str(dtype).removeprefix("torch."))
    taken = FAMILIES[name]
    for path in PATHS:
        if path not in taken:
            emit(dict(workload=name, path=path, skipped="not taken: " + NOT_TAKEN[path]))
        elif path not in paths:
            emit(dict(workload=name, path=path, skipped="not selected (--paths)"))

    def build(args: dict[str, Any], keep: dict | None = None) -> Any:
        model = workload.montage(args, fields)
        model.warmup()  # compile and capture as a replica starts (nothing without compile or graphs)
        if keep is not None:
            keep["model"] = model
        return model

    def row(path: str, make: Any) -> dict[str, Any]:
        return measure_path(workload, path, make, workload.call_montage, fields, device, timed, False)

    def attempt(path: str, run: Any) -> None:
        if path not in taken or path not in paths:
            return
        try:
            emit(dict(workload=name, path=path) | run())
        except Exception as error:  # noqa: BLE001 - one path's failure is its row; the others still run
            emit(dict(workload=name, path=path, skipped=f"failed: {type(error).__name__}: {error}"[:300]))

    attempt("eager", lambda: row("eager", functools.partial(build, base)))
    # cache and graphs run on the compiled model (on an eager one where compiled is not selected: --paths)
    kept: dict[str, Any] = {}
    on = "compiled" if "compiled" in paths else "eager"
    if on == "compiled":
        attempt("compiled", lambda: row("compiled", functools.partial(build, base | dict(compile=True), kept)))
    elif any(path in paths and path in taken for path in ("cache", "graphs")):
        build(base, kept)
    if name in ("svd", "wan") and "model" in kept:
        for extra in decode_rows(name, kept["model"], fields, device):
            emit(extra)
    attempt("cache", lambda: cache_row(name, kept["model"], fields, device) | dict(build_s=0.0, on=on))

    def graphed() -> dict[str, Any]:
        model = kept.pop("model")
        model.use_graphs(_args_class(workload.family).model_validate(base).buckets())
        return row("graphs", lambda: build_graphs(model)) | dict(on=on)

    attempt("graphs", graphed)
    kept.clear()
    release(device)
    fp8 = base | dict(compile=True, quantize="fp8")
    if "adapters" in _args_class(workload.family).model_fields:  # fp8 layers take no LoRA: its config serves none
        fp8["adapters"] = base.get("adapters", {}) | {"max_per_request": 0}
    attempt("fp8", lambda: row("fp8", functools.partial(build, fp8)))
    release(device)
    attempt("gang1", lambda: row("gang1", lambda: gang_of_one(build(base))))


def gang_of_one(model: Any) -> Any:
    """`model`'s denoiser calls through a gang of one rank (NCCL on CUDA): the code path of a multi-GPU gang
    (models/parallel.py), on the one GPU a lent machine has."""
    import tempfile

    import torch.distributed as dist

    from config.parallel import ParallelLayout
    from models.parallel import Gang, backend, join

    if not dist.is_initialized():
        store = Path(tempfile.mkdtemp()) / "store"
        dist.init_process_group(backend(model.device), init_method=f"file://{store}", rank=0, world_size=1)
    join(model, Gang(ParallelLayout(), model.device))
    return model


def decode_rows(name: str, model: Any, fields: dict, device: torch.device) -> list[dict[str, Any]]:
    """The VAE decode of one clip's latents (random) by itself: SVD at decode chunk sizes (the `decode_chunk_size`
    to serve with), Wan tiled and untiled (`vae_tiling`); seconds and peak memory of each."""
    pipe, frames = model.pipe, fields["num_frames"]
    height, width = fields["height"], fields["width"]
    rows = []

    def timed(path: str, decode: Any) -> None:
        release(device)
        try:
            with torch.inference_mode():
                decode()  # kernels and heuristics first
                sync(device)
                started = time.perf_counter()
                decode()
                sync(device)
            rows.append(dict(workload=name, path=path, e2e_s=time.perf_counter() - started, e2e_parts="VAE decode") |
                        {k: v for k, v in memory(device).items() if k.startswith("peak")})
        except Exception as error:  # noqa: BLE001 - out of memory untiled is a finding
            rows.append(dict(workload=name, path=path, skipped=f"failed: {type(error).__name__}: {error}"[:300]))

    if name == "svd":
        factor = pipe.vae_scale_factor
        latents = torch.randn(1, frames, pipe.vae.config.latent_channels, height // factor, width // factor,
                              device=device, dtype=pipe.vae.dtype)
        for chunk in sorted({4, 8, 14, frames}):
            timed(f"decode_chunk_{chunk}", lambda chunk=chunk: pipe.decode_latents(latents, frames, chunk))
        return rows
    factor, temporal = pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal
    latents = torch.randn(1, pipe.vae.config.z_dim, (frames - 1) // temporal + 1, height // factor, width // factor,
                          device=device, dtype=pipe.vae.dtype)
    tiled = pipe.vae.use_tiling
    for path, tiling in (("decode_tiled", True), ("decode_untiled", False)):
        pipe.vae.enable_tiling() if tiling else pipe.vae.disable_tiling()
        timed(path, lambda: pipe.vae.decode(latents))
    pipe.vae.enable_tiling() if tiled else pipe.vae.disable_tiling()
    return rows


def build_graphs(model: Any) -> Any:
    """The compiled model, its graphs captured by a second warm-up (the first compiled it)."""
    model.warmup()
    return model


def llm_child(source: Source, device: torch.device, out: Path, emit: Any) -> None:
    """bench.llm's rows: `generate` one request after another and the engine, at 1, 4 and 16 requests."""
    from bench import llm

    tokens = 128 if source is Source.RANDOM else 8
    report = llm.main(["--source", source.value, "--device", str(device), "--tokens", str(tokens), "--out",
                       str(out)] + (["--compile"] if device.type == "cuda" else []))
    for row in report["rows"]:
        for path, figures in (("generate", row["eager"]), ("engine", row["engine"])):
            emit(dict(workload="llm", path=f"{path}_x{row['requests']}", e2e_s=figures["wall_s"],
                      tokens_per_s=figures["tok_s"], first_token_ms=figures["first_token_ms"], tokens=tokens))
    goal = report["optimise_16"]
    emit(dict(workload="llm", path="optimise_16_at_once", e2e_s=goal["concurrent_s"], speedup=goal["speedup"],
              same_texts=goal["same_texts"]))


def child(argv: list[str]) -> None:
    """One workload in this process; rows on stdout."""
    parser = child_parser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--paths", nargs="+", default=list(PATHS))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.name == "llm":
        llm_child(args.source, device, args.out / "llm", emit)
    elif args.name == "batching":
        from bench.step_batching import batching_child

        batching_child(args.source, device, dtype, emit)
    else:
        timed = args.timed_steps or (WORKLOADS[args.name].timed_steps if args.source is Source.RANDOM else 2)
        family_child(args.name, args.source, device, dtype, timed, args.paths, emit)


# The table and the notes.

def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render(rows: list[dict], env: dict) -> str:
    lines = [f"{env.get('gpu', env.get('device'))}; torch {env.get('torch')} (CUDA {env.get('cuda')}), diffusers "
             f"{env.get('diffusers')}", "",
             "| workload | path | e2e s | step ms | tok/s · img/s · ratio | build s | peak GiB | goal | met | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = r.get("tokens_per_s", r.get("images_per_s", r.get("ratio")))
        met = {True: "yes", False: "no", None: "—"}[r.get("met")]
        note = r.get("skipped") or (f"{r['steps_skipped']} steps skipped" if r.get("steps_skipped") else "")
        peak = r.get("peak_reserved_gib", r.get("peak_rss_gib"))
        lines.append(f"| {r['workload']} | {r['path']} | {_fmt(r.get('e2e_s'), '.3f')} | "
                     f"{_fmt(r.get('per_step_ms'), '.2f')} | {_fmt(rate, '.2f')} | {_fmt(r.get('build_s'), '.1f')} | "
                     f"{_fmt(peak, '.2f')} | {_fmt(r.get('goal'), 'g')} | {met} | {note} |")
    return "\n".join(lines)


NOTE_FIELDS = ("workload", "path", "e2e_s", "tokens_per_s", "device", "goal", "met", "skipped", "per_step_ms",
               "images_per_s", "ratio", "steps_skipped", "build_s", "peak_reserved_gib")


def notes(out: Path, folder: Path = Path("bench/notes")) -> Path:
    """Copies a run's rows (OUT/speed.jsonl) to `folder/<date>-<card>-speed.jsonl`: the fields BENCHMARKS.md quotes."""
    rows = [json.loads(line) for line in (out / "speed.jsonl").read_text().splitlines() if line.strip()]
    card = rows[0]["device"].lower().replace("nvidia", "").strip().replace(" ", "-") or "cpu"
    date = time.strftime("%Y-%m-%d", time.gmtime((out / "speed.jsonl").stat().st_mtime))
    target = folder / f"{date}-{card}-speed.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps({k: row[k] for k in NOTE_FIELDS if k in row}) + "\n" for row in rows))
    return target


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return []
    if argv[:1] == ["--notes"]:
        print(notes(Path(argv[1]), *(Path(a) for a in argv[2:3])))
        return []
    parser = suite_parser(__doc__, PLAN)
    parser.add_argument("--budget-s", type=float, help="skip workloads whose estimate exceeds the time left")
    parser.add_argument("--timed-steps", type=int, help="steps timed after the warm-up one (default per workload)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS),
                        help="the family paths run (cache and graphs on an eager build without compiled)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl, table = args.out / "speed.jsonl", args.out / "speed.md"
    jsonl.write_text("")
    env = environment_row(args)
    cuda = args.device.startswith("cuda")
    label = env.get("gpu", args.device)
    rows: list[dict] = []

    def record(new: list[dict]) -> None:
        new = [judged(row, cuda) | dict(device=label) for row in new]
        rows.extend(new)
        with jsonl.open("a") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in new)
        table.write_text(render(rows, env) + "\n")

    def paths_of(name: str) -> tuple[str, ...]:
        return PATHS if name in FAMILIES else ("*",)

    for name in PLAN:
        left = args.budget_s - (time.monotonic() - started) if args.budget_s else float("inf")
        estimate = ESTIMATES[name] if cuda and args.source is Source.RANDOM else 0.0
        why = "not selected (--workloads)" if name not in args.workloads else \
            f"estimate {estimate:.0f} s > {left:.0f} s left" if estimate > left else None
        if why:
            record([dict(workload=name, path=path, skipped=why) for path in paths_of(name)])
            print(f"{name}: skipped, {why}", flush=True)
            continue
        extra = ("--out", str(args.out), "--paths", *args.paths) + (
            ("--timed-steps", str(args.timed_steps)) if args.timed_steps else ())
        run_workload("bench.speed", name, args, left, estimate, extra, record,
                     lambda new, error: [dict(workload=name, path=path, skipped=error) for path in paths_of(name)
                                         if path not in {row["path"] for row in new}])  # the paths it did not reach
    print(f"total {time.monotonic() - started:.0f} s")
    print(render(rows, env))
    return rows


if __name__ == "__main__":
    main()
