"""The GPU script (bench/device/run.sh → bench.gpu) in its CPU smoke mode on the tiny models: every row has its
figures, the table is written, and the install step is skipped where the packages are present; the step suite
(bench.gpu_steps) resumes exactly."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("e2e_s", "per_step_ms", "call_s", "build_s", "peak_rss_gib")


def test_device_script_smoke_mode_reports_every_figure(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(["bash", "bench/device/run.sh", str(out), "--device", "cpu", "--source", "tiny",
                           "--workloads", "flux_kontext", "svd"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import torch

    assert torch.__version__ in (out / "env.txt").read_text()
    rows = [json.loads(line) for line in (out / "gpu.jsonl").read_text().splitlines()]
    assert [(r["workload"], r["path"]) for r in rows] == [
        ("flux_kontext", "baseline"), ("flux_kontext", "montage"), ("svd", "baseline"), ("svd", "montage")]
    for row in rows:
        assert all(row[name] > 0 for name in FIGURES), row
        assert row["step_flops"] > 0 and row["floor_ms_per_step"] > 0 and row["timed_steps"] == 2, row
        assert row["before_s"] + row["after_s"] < row["call_s"], row
    montage = [r for r in rows if r["path"] == "montage"]
    assert all(r["encode_s"] > 0 for r in montage)  # PNG and, with imageio-ffmpeg installed here, MP4
    table = (out / "gpu.md").read_text()
    assert table.count("\n| flux_kontext | ") == 2 and "| svd | montage |" in table


def test_budget_skips_and_reports_what_would_not_fit(tmp_path):
    from bench import gpu

    rows = gpu.main(["--device", "cpu", "--source", "tiny", "--workloads", "llm", "--budget-s", "0.001",
                     "--out", str(tmp_path)])
    assert rows == [dict(workload="llm", skipped=rows[0]["skipped"])] and "left" in rows[0]["skipped"]
    assert "skipped" in (tmp_path / "gpu.md").read_text()


def test_the_whole_suite_is_predicted_to_fit_seven_minutes_on_an_h200():
    from bench import gpu
    from bench.gpu_workloads import WORKLOADS

    assert gpu.predicted_s(list(WORKLOADS)) <= 7 * 60


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
