"""The learning benchmark runs end to end at smoke size and writes a well-formed table."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_learning_benchmark_smoke(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.learning", "--smoke", "--variants", "pathwise", "ppo", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "learning_maps.json").read_text())
    runs = data["runs"]
    assert {r["variant"] for r in runs} == {"pathwise", "ppo"}
    for r in runs:
        assert r["steps"] > 0 and r["wall_clock_s"] > 0
        assert 0.0 <= r["success_rate"] <= 1.0 and math.isfinite(r["normalized_score"])
    table = (out / "learning_maps.md").read_text()
    assert "| empty | pathwise |" in table and "| empty | ppo |" in table
