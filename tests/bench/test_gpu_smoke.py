"""The GPU suite's code path, in its CPU smoke mode (tiny models): every row has its figures, all positive."""
import json

from bench import gpu

FIGURES = ("e2e_s", "per_step_ms", "peak_memory_gb", "step_flops", "floor_ms_per_step", "floor_share")


def test_gpu_suite_smoke_mode_reports_positive_figures(tmp_path):
    out = tmp_path / "gpu.json"
    gpu.main(["--device", "cpu", "--source", "tiny", "--workloads", "flux", "llm", "--repeat", "1",
              "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["matmul_flops_per_s"] > 0
    rows = report["rows"]
    assert [(r["workload"], r["path"]) for r in rows] == [
        ("flux", "baseline"), ("flux", "montage"), ("llm", "baseline"), ("llm", "montage")]
    for row in rows:
        assert all(row[name] > 0 for name in FIGURES), row
