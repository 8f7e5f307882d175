"""benchmarks.maze_actor: its states and exact action values are right, and its --smoke run
is well-formed (as CI runs it)."""

from __future__ import annotations

import json

import torch
from conftest import run_smoke

from benchmarks.maze_actor import VARIANTS, MazeStates
from envs import make_world


def test_drawn_states_stand_on_open_cells_with_their_own_values():
    mazes = MazeStates(make_world("maze:7x7"), 6, seed=3, gamma=0.99)
    obs, q = mazes.draw(500, torch.Generator().manual_seed(0))
    assert obs.shape == (500, 4, 7, 7) and q.shape == (500, 4)
    agent = obs[:, 3].flatten(1)  # (n, S)
    assert torch.equal(agent.sum(-1), torch.ones(500))  # exactly one agent cell
    cell = agent.argmax(-1)
    walls = obs[:, 0].flatten(1).gather(1, cell[:, None]).squeeze(1)
    assert (walls == 0).all()  # never inside a wall
    # The values drawn are the row of that maze and cell: find the maze by its wall plane.
    for i in range(0, 500, 50):
        w = next(k for k in range(6) if torch.equal(mazes.env.static_planes[k], obs[i, :3]))
        assert torch.equal(q[i], mazes.q[w, cell[i]])
        assert mazes.env.reachable[w, cell[i]]


def test_greedy_on_exact_values_solves_every_maze():
    """The benchmark's "optimal action" is argmax Q*; playing it in the env must reach each goal."""
    mazes = MazeStates(make_world("maze:9x9"), 16, seed=5, gamma=0.99)
    env = mazes.env
    env.reset()
    solved = torch.zeros(16, dtype=torch.bool)
    for _ in range(env.max_episode_steps):
        action = mazes.q[env.world_id, env.state].argmax(-1)  # (B,)
        _, _, _, _, info = env.step(action)
        solved |= info["success"]
        if info["done"].all():
            break
    assert solved.all()


def test_smoke_run_writes_a_row_per_variant(tmp_path):
    run_smoke(["-m", "benchmarks.maze_actor"], ["--out", str(tmp_path)])
    data = json.loads((tmp_path / "maze_actor.json").read_text())
    assert [r["variant"] for r in data["runs"]] == [v.name for v in VARIANTS]
    for r in data["runs"]:
        assert 0.0 <= r["optimal_action"] <= 1.0 and 0.0 <= r["unseen_success"] <= 1.0
        assert 0.0 <= r["entropy"] <= torch.log(torch.tensor(4.0)).item() + 1e-5
    assert "machine:" in data["machine"]
    assert (tmp_path / "maze_actor.md").read_text().count("|") > 10
