"""benchmarks.time_to_solve: the --smoke run (as CI runs it) writes well-formed results, with or
without stable-baselines3, and the summary's medians and ratios are right."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, run_smoke

from benchmarks.time_to_solve import LEARNERS, SB3_MISSING, markdown, sb3_version, summarise

# Hides stable-baselines3 from the benchmark (a None entry makes `import` raise ImportError).
WITHOUT_SB3 = (
    "import sys; sys.modules['stable_baselines3'] = None; "
    "from benchmarks.time_to_solve import main; raise SystemExit(main(sys.argv[1:]))"
)


def _run(prefix: list[str], args: list[str]) -> subprocess.CompletedProcess:
    proc = run_smoke(prefix, args)
    assert "torch.set_num_threads(1)" in proc.stdout
    return proc


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _check_results(out: Path, learners: set[str]) -> dict:
    data = json.loads((out / "time_to_solve.json").read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["torch_threads"] == 1
    assert {r["learner"] for r in data["runs"]} == learners
    for r in data["runs"]:
        assert r["world"] == "FrozenLake8x8" and r["seed"] == 0, r
        assert _positive(r["steps"]) and _positive(r["wall_clock_s"]), r
        assert 0.0 <= r["success_rate"] <= 1.0 and isinstance(r["solved"], bool), r
        assert r["torch_threads"] == 1
    for s in data["summary"]:
        # A median is null only when the run was not solved (smoke budgets rarely solve).
        for key in ("env_steps", "wall_clock_s"):
            assert _positive(s[key]) or (s[key] is None and s["seeds_solved"] == 0), s
    assert "| FrozenLake8x8 |" in (out / "time_to_solve.md").read_text()
    return data


def test_smoke_all_learners(tmp_path):
    """Every learner; sb3-ppo runs if installed, else is skipped with one line."""
    proc = _run(["-m", "benchmarks.time_to_solve"], ["--out", str(tmp_path)])
    installed = sb3_version() is not None
    learners = set(LEARNERS) if installed else set(LEARNERS) - {"sb3-ppo", "sb3-ppo-tuned"}
    data = _check_results(tmp_path, learners)
    assert (SB3_MISSING in proc.stdout) != installed
    assert data["stable_baselines3"] == sb3_version()
    process = next(r for r in data["runs"] if r["learner"] == "train.py")
    assert process["command"].startswith("python train.py --env FrozenLake-v1 --env-kwargs map_name:8x8")
    assert process["wall_clock_s"] > process["train_loop_s"]  # the whole process, not the loop
    if installed:
        tuned = next(r for r in data["runs"] if r["learner"] == "sb3-ppo-tuned")
        assert tuned["sb3"] == {"n_steps": 64, "batch_size": 64, "ent_coef": 0.01}  # smoke's n_steps


def test_smoke_without_sb3(tmp_path):
    proc = _run(["-c", WITHOUT_SB3], [*"--learners pathwise sb3-ppo --out".split(), str(tmp_path)])
    assert SB3_MISSING in proc.stdout
    data = _check_results(tmp_path, {"pathwise"})
    assert data["stable_baselines3"] is None


def test_bad_option_is_one_line_error():
    proc = subprocess.run(
        [sys.executable, *"-m benchmarks.time_to_solve --threads 0".split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --threads 0 must be at least 1"


def test_summary_medians_and_ratios():
    def row(learner, seed, steps, wall, solved=True):
        return {"world": "w", "learner": learner, "seed": seed, "steps": steps, "wall_clock_s": wall, "solved": solved}

    rows = [
        row("pathwise", 0, 100, 1.0),
        row("pathwise", 1, 300, 3.0),
        row("pathwise", 2, 200, 2.0),
        row("sb3-ppo", 0, 400, 8.0),
        row("sb3-ppo", 1, 1000, 20.0, solved=False),
        row("sb3-ppo", 2, 600, 4.0),
        # Two of three seeds unsolved: the median run did not solve it.
        row("ppo", 0, 50, 1.0),
        row("ppo", 1, 1000, 9.0, False),
        row("ppo", 2, 1000, 9.0, False),
    ]
    by = {s["learner"]: s for s in summarise(rows)}
    assert by["pathwise"]["env_steps"] == 200 and by["pathwise"]["wall_clock_s"] == 2.0
    # An unsolved seed counts as infinitely slow: median of {400, 600, inf} is 600.
    assert by["sb3-ppo"]["env_steps"] == 600 and by["sb3-ppo"]["wall_clock_s"] == 8.0
    assert by["sb3-ppo"]["seeds_solved"] == 2 and by["sb3-ppo"]["seeds"] == 3
    assert by["pathwise"]["reference_over_this"]["sb3-ppo"] == {"wall_clock_s": 4.0, "env_steps": 3.0}
    assert by["sb3-ppo"]["reference_over_this"]["sb3-ppo"]["wall_clock_s"] == 1.0
    assert math.isinf(by["ppo"]["env_steps"])
    assert by["ppo"]["reference_over_this"]["sb3-ppo"] == {"wall_clock_s": None, "env_steps": None}
    assert "sb3-ppo-tuned" not in by["pathwise"]["reference_over_this"]  # not run, no column
    table = markdown(list(by.values()), max_steps=1000)
    assert "not solved (cap 1,000)" in table and "4.00" in table and "sb3-ppo / this, wall-clock" in table
    assert "sb3-ppo-tuned" not in table
