"""benchmarks/minigrid.py and minigrid_loops.py: the Minigrid suite runs, resumes and refuses
as it says, and the loop diagnosis reads a kept policy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, run_smoke


def test_minigrid_smoke_resumes_from_its_rows(tmp_path, monkeypatch):
    # The model learner, our PPO, SB3's PPO and DQN, one tiny run each; a second call reuses the stored rows.
    learners = ["model", "ppo", "sb3-ppo", "sb3-dqn"]
    args = ["--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path), "--learners", *learners]
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    run_smoke(["-m", "benchmarks.minigrid"], args)
    assert not list((tmp_path / "tmp").glob("SB3-*"))  # SB3's runs leave no log folders behind
    data = json.loads((tmp_path / "minigrid_tuning.json").read_text())
    assert {r["learner"] for r in data["runs"]} == set(learners) and data["runs finished"] == "4/4"
    for r in data["runs"]:
        assert r["episodes"] == 8 and 0 <= r["success_ci95_low"] <= r["success_rate"] <= r["success_ci95_high"] <= 1
        assert r["class"] == "samples" and r["frames"] >= 2048 and r["git_commit"] == data["git_commit"]
        assert 0 < r["train_s"] < r["wall_clock_s"]  # training alone, without the test episodes
        # Every evaluation in order, as [frames, success, return], the last at the run's end.
        frames = [c[0] for c in r["curve"]]
        assert frames == sorted(frames) and frames[-1] == r["frames"], r
        assert all(0 <= c[1] <= 1 for c in r["curve"])
    from benchmarks.minigrid import plot_curves

    (figure,) = plot_curves(data["runs"], 0.95, tmp_path / "figures")
    assert figure.name == "minigrid_Empty-5x5.png" and figure.read_bytes()[:4] == b"\x89PNG"
    rows = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/row.json")}
    assert len(rows) == 4
    run_smoke(["-m", "benchmarks.minigrid"], args)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/row.json")} == rows
    # --collect trains nothing and writes the finished runs' results, here all four.
    run_smoke(["-m", "benchmarks.minigrid"], [*args, "--collect", "--name", "collected"])
    collected = json.loads((tmp_path / "collected.json").read_text())
    assert collected["runs finished"] == "4/4" and collected["runs"] == sorted(
        data["runs"], key=lambda r: (r["env"], r["learner"], r["seed"])
    )


def test_minigrid_loops_finds_where_a_kept_policy_goes_round(tmp_path, capsys):
    from agent.run.config import TrainConfig
    from agent.run.trainer import train
    from benchmarks.minigrid_loops import main

    # A barely trained policy on Empty-5x5: its greedy episodes mostly time out, turning on the spot.
    cfg = TrainConfig(env="MiniGrid-Empty-5x5-v0", algo="model", total_timesteps=256, eval_episodes=4,
                      runs_dir=str(tmp_path), run_name="r", wandb_mode="disabled", progress=False)  # fmt: skip
    train(cfg, {"env", "algo"})
    assert main([str(tmp_path / "r"), "--episodes", "6", "--rollouts", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "minigrid_loops.json").read_text())
    assert data["command"].startswith(f"python -m benchmarks.minigrid_loops {tmp_path / 'r'}") and data["git_commit"]
    (row,) = data["runs"]
    assert row["env"] == "MiniGrid-Empty-5x5-v0" and row["episodes"] == 6
    failed = 6 - round(row["success"] * 6)
    assert row["timeouts"] + row["ended otherwise"] == failed
    looping, of = map(int, row["failures that loop"].split("/"))
    assert of == failed and looping <= failed and (row["action in loops"] is None) == (looping == 0)
    assert looping >= 1 and 1 <= len(row["loop"]) <= 4 and "In the first loop" in capsys.readouterr().out
    for at in row["loop"]:
        q = {a["action"]: a["q (critic)"] for a in at["actions"]}
        assert list(q) == ["left", "right", "forward", "pickup", "drop", "toggle", "done"]
        assert sum(a["policy"] for a in at["actions"]) == pytest.approx(1, abs=0.01)
        # In an empty room, pickup, drop and done leave the agent where it was: the same successor.
        assert q["pickup"] == q["drop"] == q["done"]


def test_minigrid_goes_on_with_an_unfinished_run_from_its_checkpoint(tmp_path):
    from benchmarks.minigrid import CLOCK, Budget, train_ours

    run_dir = tmp_path / "MiniGrid-DoorKey-5x5-v0__model__0"
    # DoorKey-5x5 takes the model learner some 16k frames: no run here stops at the target.
    budget = Budget(frames=512, target=1.0, eval_every=512, eval_episodes=4, test_episodes=4)
    first = train_ours("MiniGrid-DoorKey-5x5-v0", "model", 0, budget, run_dir)
    assert (first["frames"], first["segments"]) == (512, 1) and first["train_s"] > 0
    # Left without a row, as a command stopped by a signal leaves it: the next one goes on from 512.
    second = train_ours("MiniGrid-DoorKey-5x5-v0", "model", 0, Budget(1536, 1.0, 512, 4, 4), run_dir)
    assert (second["frames"], second["segments"]) == (1536, 2) and second["train_s"] > first["train_s"]
    before = [c[0] for c in first["curve"]]  # evaluations after 1 and 2 updates, then every 512 frames
    assert before == [256, 512] and [c[0] for c in second["curve"]] == [*before, 1024, 1536]
    # A part killed before it could close its clock leaves the seconds unknown.
    clock = json.loads((run_dir / CLOCK).read_text())
    (run_dir / CLOCK).write_text(json.dumps(clock | {"running": True}))
    third = train_ours("MiniGrid-DoorKey-5x5-v0", "model", 0, Budget(2048, 1.0, 512, 4, 4), run_dir)
    assert (third["frames"], third["segments"], third["train_s"]) == (2048, 3, None)


@pytest.mark.parametrize(
    "env_id, says", [("MiniGrid-Nope-v0", "no such gymnasium env"), ("CartPole-v1", "not a Minigrid env")]
)
def test_minigrid_refuses_an_env_it_cannot_run_in_one_line(tmp_path, env_id, says):
    args = ["--envs", env_id, "--learners", "model", "--runs-dir", str(tmp_path), "--out", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.minigrid", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: --envs {env_id}") and says in line


def test_minigrid_medians_of_seconds_are_unknown_when_a_run_s_are():
    from benchmarks.minigrid import summarise

    row = {"env": "E", "learner": "model", "class": "samples", "success_rate": 1.0, "mean_return": 0.9,
           "frames_to_target": 4096, "frames": 4096, "train_s": 10.0, "wall_clock_s": 12.0}  # fmt: skip
    parts = row | {"train_s": None, "wall_clock_s": None, "segments": 2}  # a part killed hard; run in two parts
    (whole,), _ = summarise([row, row | {"train_s": 20.0, "wall_clock_s": 22.0}], 0.95, 4096)
    (mixed,), _ = summarise([row, parts], 0.95, 4096)
    assert (whole["train s (median)"], whole["wall-clock s (median)"]) == (15.0, 17.0)
    assert (mixed["train s (median)"], mixed["wall-clock s (median)"]) == (None, None)
    assert mixed["seeds solved"] == "2/2"


def test_minigrid_frames_to_target_are_compared_on_the_common_evaluation_grid():
    from benchmarks.minigrid import on_grid

    # train.py's runs evaluate after 1, 2, 4, ... updates as well; SB3's only every --eval-every frames.
    assert on_grid({"frames_to_target": 16384, "frames": 16384}, 20480) == 20480
    assert on_grid({"frames_to_target": 40960, "frames": 40960}, 20480) == 40960
    assert on_grid({"frames_to_target": None, "frames": 503808}, 20480) == 503808


def test_minigrid_leaves_alone_a_run_that_another_process_is_running(tmp_path):
    # Two commands on one --runs-dir: the second skips what the first is running, rather than
    # restarting it over the first one's files.
    from agent.run.rundir import RunLock

    runs = tmp_path / "runs"
    busy = RunLock(runs / ".running" / "MiniGrid-Empty-5x5-v0__model__0").acquire()
    try:
        args = ["--runs-dir", str(runs), "--out", str(tmp_path), "--learners", "model", "ppo", "--figures", "None"]
        proc = run_smoke(["-m", "benchmarks.minigrid"], args)
    finally:
        busy.release()
    assert "MiniGrid-Empty-5x5-v0__model__0: another process is running it; skipped" in proc.stdout
    assert not (runs / "MiniGrid-Empty-5x5-v0__model__0").exists()
    data = json.loads((tmp_path / "minigrid_tuning.json").read_text())
    assert [r["learner"] for r in data["runs"]] == ["ppo"] and data["runs finished"] == "1/2"
