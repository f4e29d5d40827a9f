"""The benchmark suite runs end to end in its quick mode and writes every figure (times are not asserted)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = (
    "latency_ratio_vs_backbone",
    "triage_throughput_ratio",
    "fast_path_speedup",
    "fast_path_max_abs_diff",
    "gui_max_stall_ms",
    "startup_s",
    "train_step_ratio",
    "input_cache_speedup_vs_png",
)


@pytest.mark.slow
def test_quick_benchmark_writes_all_keys(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench.json"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CXR_TRIAGE_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)]
    cmd += ["--images", "16", "--repeats", "2", "--probe-runs", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = json.loads(out.read_text())
    for key in KEYS:
        assert isinstance(figures[key], (int, float)), key
        assert math.isfinite(figures[key]), key
        assert key in proc.stdout  # the printed summary table names every key
    assert figures["fast_path_max_abs_diff"] >= 0
    assert figures["startup_s"] > 0
    assert "## 3. CPU inference options" in proc.stdout


def test_benchmark_cli_lists_its_sections() -> None:
    from benchmarks.__main__ import JSON_KEYS, SECTIONS, get_parser

    assert JSON_KEYS == KEYS
    args = get_parser().parse_args(["--quick", "--skip", "gui", "train"])
    assert args.quick
    assert set(args.skip) <= set(SECTIONS)
