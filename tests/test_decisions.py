"""benchmarks.decisions: a real run's decisions counted against value iteration."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, run_train

from agent.run.scoring import world_tables
from benchmarks.decisions import main, optimal_values
from envs import BatchedGridWorld
from envs.mdp import TabularMDP
from envs.oracle import value_iteration


def test_optimal_values_are_value_iteration_s_for_every_world():
    env = BatchedGridWorld("maze:7x7", 3, obs_mode="image", seed=0, maze_pool=3)
    tables = world_tables(env)
    values = optimal_values(tables, 0.99)  # (3, S)
    for w in range(3):
        maze = TabularMDP(**{k: tables[k][w] for k in ("next_state", "prob", "reward", "done", "success", "start")})
        torch.testing.assert_close(values[w], value_iteration(maze, 0.99).values, rtol=0, atol=1e-8)


@pytest.mark.parametrize("world", ["empty", "maze:7x7"])
def test_a_run_s_decisions_are_counted(tmp_path, world):
    proc = run_train(
        [*TINY, "--env", world, "--wandb-mode", "disabled", "--runs-dir", str(tmp_path), "--run-name", "r"],
        tmp_path / "home",
    )
    assert proc.returncode == 0, proc.stderr
    assert main([str(tmp_path / "r"), "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "decisions.json").read_text())
    (row,) = data["rows"]
    assert row["decision states"] > 0 and row["global_step"] == 4096
    assert row["run_git_commit"] is None  # train.py names none; benchmarks.generalisation's runs do
    for key in ("policy optimal", "critic optimal", "critic-greedy success", "policy success"):
        assert 0.0 <= row[key] <= 1.0, (key, row)
    assert row["value error"] >= 0 and row["Q* gap"] > 0
    assert data["command"].startswith("python -m benchmarks.decisions ")
