"""The one device run (bench/device/run.sh → bench.speed) in its CPU smoke mode on the tiny models: every workload
and every path has its row, with figures or the reason it did not run; the batching and LLM rows have their rates,
the table its goal and met columns, and the notes tool copies the rows."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import speed
from config.families import Source

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[dict]]:
    """The device command in smoke mode: SDXL eager and graphs (no compile: minutes on a CPU), batching, the LLM."""
    out = tmp_path_factory.mktemp("speed") / "out"
    done = subprocess.run(["bash", "bench/device/run.sh", str(out), "--device", "cpu", "--source", "tiny",
                           "--workloads", "sdxl", "batching", "llm", "--paths", "eager", "graphs", "fp8", "cache"],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable),
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, [json.loads(line) for line in (out / "speed.jsonl").read_text().splitlines()]


def test_every_workload_and_path_has_its_row_with_figures_or_a_reason(run):
    out, rows = run
    by = {(r["workload"], r["path"]): r for r in rows}
    assert {r["workload"] for r in rows} == set(speed.PLAN)
    for name in speed.FAMILIES:
        for path in speed.PATHS:
            row = by[name, path]
            assert row["device"] == "cpu" and ("skipped" in row or row["e2e_s"] > 0), row
    for path in ("eager", "graphs"):
        assert by["sdxl", path]["e2e_s"] > 0 and by["sdxl", path]["per_step_ms"] > 0
    assert by["sdxl", "compiled"]["skipped"] == "not selected (--paths)"
    assert by["sdxl", "fp8"]["skipped"].startswith("not taken") and by["flux", "eager"]["skipped"].startswith("not sel")
    for mode in ("one_at_a_time", "request_batching", "continuous", "one_after_the_other", "taking_turns"):
        assert by["batching", mode]["e2e_s"] > 0
    for ratio in ("continuous_vs_one_at_a_time", "turns_vs_one_after_the_other"):
        assert by["batching", ratio]["ratio"] > 0 and by["batching", ratio]["goal"] > 0
        assert by["batching", ratio]["met"] is None  # goals are judged on CUDA only
    assert by["llm", "engine_x1"]["tokens_per_s"] > 0 and by["llm", "generate_x16"]["tokens_per_s"] > 0
    table = (out / "speed.md").read_text()
    assert "| goal | met |" in table and table.count("\n| ") == len(rows) + 1


def test_the_notes_tool_copies_the_rows_by_date_and_card(run, tmp_path):
    out, rows = run
    target = speed.notes(out, tmp_path)
    assert target.name.endswith("-cpu-speed.jsonl")
    copied = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(copied) == len(rows)
    assert all({"workload", "path", "device"} <= set(row) for row in copied)
    assert all("e2e_s" in row or "skipped" in row for row in copied)


def test_flux_fp8_and_cache_paths_run_with_their_own_configs():
    """The step cache runs on the CPU; fp8's config serves no LoRA (fp8 layers take none), so it is accepted and the
    model itself refuses the CPU, naming what fp8 needs (on a GPU before compute capability 8.9 likewise)."""
    rows: list[dict] = []
    speed.family_child("flux", Source.TINY, torch.device("cpu"), torch.float32, 2, ["fp8", "cache"], rows.append)
    by = {row["path"]: row for row in rows}
    assert set(by) == set(speed.PATHS)
    assert by["cache"]["e2e_s"] > 0 and by["cache"]["steps_skipped"] in range(by["cache"]["steps"] + 1)
    assert by["fp8"]["skipped"].startswith("failed: ValueError: quantize: fp8 needs a CUDA device"), by["fp8"]
    assert by["graphs"]["skipped"].startswith("not taken") and by["eager"]["skipped"] == "not selected (--paths)"
