"""The earlier GPU suite (MONTAGE_BENCH=bench.gpu bench/device/run.sh) in its CPU smoke mode on the tiny models: every row has its
figures, the table is written, and the install step is skipped where the packages are present; the step suite
(bench.gpu_steps) resumes exactly."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("e2e_s", "per_step_ms", "call_s", "build_s", "peak_rss_gib")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> list[dict]:
    """The device script in its CPU smoke mode, once for the module: its rows."""
    out = tmp_path_factory.mktemp("smoke") / "out"
    done = subprocess.run(["bash", "bench/device/run.sh", str(out), "--device", "cpu", "--source", "tiny",
                           "--workloads", "flux_kontext", "svd"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable, MONTAGE_BENCH="bench.gpu"), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import torch

    assert torch.__version__ in (out / "env.txt").read_text()
    table = (out / "gpu.md").read_text()
    assert table.count("\n| flux_kontext | ") == 2 and "| svd | montage |" in table
    return [json.loads(line) for line in (out / "gpu.jsonl").read_text().splitlines()]


def test_device_script_smoke_mode_reports_every_figure(smoke):
    assert [(r["workload"], r["path"]) for r in smoke] == [
        ("flux_kontext", "baseline"), ("flux_kontext", "montage"), ("svd", "baseline"), ("svd", "montage")]
    for row in smoke:
        assert all(row[name] > 0 for name in FIGURES), row
        assert row["step_flops"] > 0 and row["floor_ms_per_step"] > 0 and row["timed_steps"] == 2, row
        assert row["before_s"] + row["after_s"] < row["call_s"], row
        # every path's end-to-end adds the media encode (PNG and, with imageio-ffmpeg installed here, MP4)
        assert row["encode_s"] > 0 and row["e2e_parts"] == "before + steps × step + after + encode", row
        parts = row["before_s"] + row["steps"] * row["per_step_ms"] / 1000 + row["after_s"] + row["encode_s"]
        assert row["e2e_s"] == pytest.approx(parts), row
    assert len({r["workload_s"] for r in smoke if r["workload"] == "svd"}) == 1  # one measured duration a workload


def test_budget_skips_a_workload_whose_measured_duration_exceeds_the_time_left(smoke, tmp_path):
    """Expected durations come from an earlier run's measured `workload_s`: a budget below flux_kontext's measured
    duration skips it, naming that duration."""
    from bench import gpu

    measured = {r["workload"]: r["workload_s"] for r in smoke}
    previous = tmp_path / "previous.jsonl"
    previous.write_text("".join(json.dumps(r) + "\n" for r in smoke))
    assert gpu.measured_durations(previous) == measured
    assert gpu.estimates(["svd", "llm"], measured) == {"svd": measured["svd"], "llm": gpu.WORKLOADS["llm"].estimate_s}
    budget = measured["flux_kontext"] / 2
    rows = gpu.main(["--device", "cpu", "--source", "tiny", "--workloads", "flux_kontext", "--budget-s", str(budget),
                     "--durations", str(previous), "--out", str(tmp_path / "out")])
    assert [r["workload"] for r in rows] == ["flux_kontext"]
    assert rows[0]["skipped"].startswith(f"estimate {measured['flux_kontext']:.0f} s > ")
    assert "skipped" in (tmp_path / "out" / "gpu.md").read_text()


def test_the_kernel_probe_times_every_attention_shape_and_gemm_in_smoke_mode(tmp_path):
    """bench.probe at 1/50 of the serving lengths on the CPU: every family's attention shape by the default SDPA and
    each CPU backend, every GEMM in bf16 and fp8 rowwise (with and without quantising the activation), each with its
    error against fp32; fp8's error is the larger, and bounded."""
    from bench import probe

    rows = probe.main(["--device", "cpu", "--scale", "0.02", "--reps", "1", "--out", str(tmp_path)])
    assert rows[0]["kind"] == "environment" and len((tmp_path / "probe.jsonl").read_text().splitlines()) == len(rows)
    timed = {(r["kind"], r["shape"], r["impl"]): r for r in rows[1:]}
    assert {(shape, impl) for kind, shape, impl in timed if kind == "attention"} == {
        (shape, impl) for shape in probe.ATTENTION for impl in ("default", "math", "flash")}
    for (kind, shape, impl), row in timed.items():
        assert row["ms"] > 0 and row["tflops"] > 0, row
        assert row["rel_err"] < (0.1 if impl.startswith("fp8") else 0.01), row
    for shape in probe.GEMM:
        bf16, fp8 = timed["gemm", shape, "bf16"], timed["gemm", shape, "fp8_rowwise"]
        assert fp8["rel_err"] > bf16["rel_err"], (bf16, fp8)
        assert timed["gemm", shape, "fp8_rowwise_with_quantisation"]["rel_err"] == pytest.approx(fp8["rel_err"])


def test_the_step_suite_resumes_exactly_and_two_scheduled_groups_equal_their_solo_runs(tmp_path):
    from bench import gpu_steps

    rows = {row["workload"]: row for row in gpu_steps.main(["--device", "cpu", "--source", "tiny", "--workloads",
                                                            "sdxl", "--out", str(tmp_path)])}
    job, pair = rows["sdxl"], rows["sdxl_two_threads"]
    assert (job["resumed_steps"], job["resume_max_abs_diff"], job["extras_change_output"]) == (2, 0, 0)
    assert job["output_shape"] == [1, 64, 64, 3] and job["checkpoint_mb"] > 0 and job["preview_kb"] > 0
    for mode in ("scheduled", "turns"):  # free-running calls may collide in the shared tokenizer: a replica never
        assert (pair[f"{mode}_error"], pair[f"{mode}_max_abs_diff_vs_solo"]) == (None, 0)  # runs them so
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 2
