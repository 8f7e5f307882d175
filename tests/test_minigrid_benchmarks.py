"""benchmarks/minigrid.py and minigrid_loops.py: the Minigrid suite runs, resumes and refuses
as it says, and the loop diagnosis reads a kept policy."""

from __future__ import annotations

import json
import os
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
        assert 0 < r["eval_s"] < r["train_s"]  # of which its evaluations
        # Every evaluation in order, as [frames, success, return], the last at the run's end.
        frames = [c[0] for c in r["curve"]]
        assert frames == sorted(frames) and frames[-1] == r["frames"], r
        assert all(0 <= c[1] <= 1 for c in r["curve"])
        if r["learner"].startswith("sb3"):  # after each rollout of 1,024 frames (the grid here), train.py's rule
            assert frames == [1024, 2048][: len(frames)], r
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
    # --rows-from: the rows of a results file stand in for runs whose directories are gone.
    moved = [*args[:1], str(tmp_path / "elsewhere"), *args[2:]]
    run_smoke(
        ["-m", "benchmarks.minigrid"],
        [*moved, "--collect", "--name", "restored", "--rows-from", str(tmp_path / "collected.json")],
    )
    assert json.loads((tmp_path / "restored.json").read_text())["runs"] == collected["runs"]


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
        assert all(isinstance(a["q (model)"], float) for a in at["actions"])  # a model learner's run
    assert row["step"] == 256 and 0 <= row["success (sampled)"] <= 1


def test_minigrid_stopped_leaves_the_benchmark_s_run_at_the_step_asked(tmp_path):
    import torch

    from benchmarks.minigrid_stopped import main

    argv = ["--env", "MiniGrid-Empty-5x5-v0", "--seeds", "0", "1", "--at", "512", "256", "--frames", "4096",
            "--eval-every", "256", "--eval-episodes", "4", "--target", "1.0", "--runs-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    for seed, at in ((0, 512), (1, 256)):
        checkpoint = tmp_path / f"MiniGrid-Empty-5x5-v0__model__{seed}__{at}" / "checkpoint.pt"
        saved = torch.load(checkpoint, weights_only=True)
        assert saved["global_step"] == at and saved["config"]["total_timesteps"] == 4096  # the budget's schedule
    with pytest.raises(SystemExit):
        main([*argv[:4], "--at", "1", "2", "3"])


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


def test_minigrid_offers_every_learner_it_can_run_and_no_other():
    from typing import get_args, get_type_hints

    from benchmarks.minigrid import Args
    from benchmarks.minigrid_learners import CLASS, OURS

    choice, _ = get_args(get_type_hints(Args)["learners"])  # tuple[Learner, ...]
    assert set(get_args(choice)) == set(CLASS) == set(OURS) | {"sb3-ppo", "sb3-dqn"}


def test_minigrid_medians_of_seconds_are_unknown_when_a_run_s_are():
    from benchmarks.minigrid_results import summarise

    row = {"env": "E", "learner": "model", "class": "samples", "success_rate": 1.0, "mean_return": 0.9,
           "frames_to_target": 4096, "frames": 4096, "train_s": 10.0, "wall_clock_s": 12.0}  # fmt: skip
    parts = row | {"train_s": None, "wall_clock_s": None, "segments": 2}  # a part killed hard; run in two parts
    (whole,), _ = summarise([row, row | {"train_s": 20.0, "wall_clock_s": 22.0}], 0.95, 4096)
    (mixed,), _ = summarise([row, parts], 0.95, 4096)
    assert (whole["train s (median)"], whole["wall-clock s (median)"]) == (15.0, 17.0)
    assert (mixed["train s (median)"], mixed["wall-clock s (median)"]) == (None, None)
    assert mixed["seeds solved"] == "2/2"
    # The learning's cost a frame: training less evaluations, over the frames; unknown without eval_s.
    assert whole["learning ms a frame (median)"] is None
    (timed,), _ = summarise([row | {"eval_s": 2.0}, row | {"train_s": 20.0, "eval_s": 4.0}], 0.95, 4096)
    assert timed["learning ms a frame (median)"] == 1000 * (8.0 + 16.0) / 2 / 4096


def test_minigrid_frames_to_target_are_compared_on_the_common_evaluation_grid():
    from benchmarks.minigrid_results import evaluated_early, on_grid, summarise

    # Every --eval-every frames, and (early) after 1, 2, 4, ... SB3 rollouts of 1,024 frames below it.
    assert on_grid({"frames_to_target": 16384, "frames": 16384}, 20480) == 20480
    assert on_grid({"frames_to_target": 40960, "frames": 40960}, 20480) == 40960
    assert on_grid({"frames_to_target": None, "frames": 503808}, 20480) == 503808
    early = [on_grid({"frames_to_target": f, "frames": f}, 20480, early=True) for f in (256, 1024, 1280, 16384, 16640)]
    assert early == [1024, 1024, 2048, 16384, 20480]
    # An SB3 run evaluated on the coarse grid alone (before 1a1c674): then every learner's frames are.
    ours = {"learner": "model", "curve": [[256, 0.0, 0.0], [2048, 1.0, 0.9]], "frames_to_target": 2048}
    new_sb3 = {"learner": "sb3-ppo", "curve": [[1024, 0.0, 0.0], [4096, 1.0, 0.9]], "frames_to_target": 4096}
    old_sb3 = {"learner": "sb3-ppo", "curve": [[20480, 1.0, 0.9]], "frames_to_target": 20480}
    assert evaluated_early([ours, new_sb3], 20480) and not evaluated_early([ours, old_sb3], 20480)
    common = {"env": "E", "class": "samples", "success_rate": 1.0, "mean_return": 0.9, "frames": 20480}
    common |= {"seed": 0, "wall_clock_s": 1.0}
    for sb3, expected in ((new_sb3, 2048), (old_sb3, 20480)):
        per_env, _ = summarise([common | ours, common | sb3], 0.95, 20480)
        assert [r["frames to target (median)"] for r in per_env if r["learner"] == "model"] == [expected]


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


def _run(seed, success, frames_to_target, frames=500_000, ci=0.02):
    return {
        "seed": seed,
        "success_rate": success,
        "success_ci95_low": max(0.0, success - ci),
        "success_ci95_high": min(1.0, success + ci),
        "frames_to_target": frames_to_target,
        "frames": frames if frames_to_target is None else frames_to_target,
        "git_commit": "abcdef0123",
    }


def test_minigrid_actor_grad_pairs_by_seed_and_calls_each_env_by_its_rule():
    from benchmarks.minigrid_actor_grad import pair, sign_test

    assert sign_test(6, 0) == pytest.approx(2 / 64) and sign_test(5, 1) == pytest.approx(14 / 64)
    assert sign_test(3, 3) == 1.0 and sign_test(0, 0) == 1.0
    # More seeds solved wins, whatever the frames.
    assert pair([_run(0, 1.0, 400_000)], [_run(0, 0.9, None)], 0.95, 20480) == "pathwise"
    # Both solve: fewer frames on the grid wins; 30k and 40k are both 40,960 on a grid of 20,480.
    assert pair([_run(0, 1.0, 30_000)], [_run(0, 1.0, 40_000)], 0.95, 20480) == "tie"
    assert pair([_run(0, 1.0, 50_000)], [_run(0, 1.0, 40_000)], 0.95, 20480) == "reinforce"
    # Neither solves one seed: the test successes' intervals decide, or tie where they overlap.
    assert pair([_run(0, 0.50, None)], [_run(0, 0.70, None)], 0.95, 20480) == "reinforce"
    assert pair([_run(0, 0.50, None)], [_run(0, 0.53, None)], 0.95, 20480) == "tie"
    # Several seeds, not all solved by either: the seeds' own winners vote. Seed 0 goes to pathwise,
    # seed 1 ties (the intervals overlap), seed 2 ties on the grid of 20,480 (both 102,400) ...
    ours, theirs = (
        [_run(0, 0.7, None), _run(1, 0.8, None), _run(2, 1.0, 90_000)],
        [_run(0, 0.3, None), _run(1, 0.81, None), _run(2, 1.0, 85_000)],
    )
    assert pair(ours, theirs, 0.95, 20480) == "pathwise"
    assert pair(ours, theirs, 0.95, 4096) == "tie"  # ... and goes to REINFORCE on the grid of 4,096


def test_minigrid_actor_grad_takes_each_env_from_the_last_file_with_both_actors(tmp_path):
    from benchmarks.minigrid_actor_grad import main

    budget = {"target": 0.95, "eval_every": 4096}
    rows = lambda env, learner, runs: [{**r, "env": env, "learner": learner} for r in runs]  # noqa: E731
    first = {
        "budget": {**budget, "eval_every": 20480},
        "runs": rows("E1", "model", [_run(0, 1.0, 20_000)])
        + rows("E1", "model-reinforce", [_run(0, 1.0, 20_000)])
        + rows("E2", "model", [_run(0, 0.2, None)])
        + rows("E2", "model-reinforce", [_run(0, 0.6, None)]),
    }
    # The second file has E1 on three seeds of pathwise and two of REINFORCE (paired on 0 and 1),
    # and an env with pathwise alone, which is left out.
    second = {
        "budget": budget,
        "runs": rows("E1", "model", [_run(0, 1.0, 8000), _run(1, 1.0, 4000), _run(2, 1.0, 90_000)])
        + rows("E1", "model-reinforce", [_run(0, 1.0, 12_000), _run(1, 1.0, 16_000)])
        + rows("E3", "model", [_run(0, 1.0, 4000)]),
    }
    paths = [tmp_path / "first.json", tmp_path / "second.json"]
    for p, d in zip(paths, (first, second), strict=True):
        p.write_text(json.dumps(d))
    assert main([*map(str, paths), "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "minigrid_actor_grad.json").read_text())
    e1, e2 = out["envs"]
    assert (e1["env"], e1["seeds"], e1["grid"], e1["source"]) == ("E1", "0, 1", 4096, str(paths[1]))
    assert (e1["pathwise frames (median)"], e1["reinforce frames (median)"], e1["better"]) == (6144, 14336, "pathwise")
    assert (e2["env"], e2["better"], e2["class"]) == ("E2", "reinforce", "samples")
    assert out["counts"] == {"pathwise": 1, "reinforce": 1, "tie": 0} and out["sign_test_p"] == 1.0
    assert "Over 2 Minigrid envs" in (tmp_path / "minigrid_actor_grad.md").read_text()


@pytest.mark.parametrize("given, says", [(["x.json"], "x.json: not a results file"), ([], "RESULTS_JSON: give")])
def test_minigrid_actor_grad_refuses_a_missing_or_wrong_file_in_one_line(tmp_path, given, says):
    (tmp_path / "x.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.minigrid_actor_grad", *given],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {says}"), proc.stderr
