"""envs.maze: seeded perfect mazes, maze specs, and mazes inside both envs."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from envs import BatchedGridWorld, GridWorldEnv, MazeSpec, generate_maze, make_world, parse_map
from envs.maze import parse_maze_spec


def _open_cells(walls: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(~walls), strict=True)}


def _adjacencies(cells: set[tuple[int, int]]) -> int:
    """Unordered pairs of open cells that share a side."""
    return sum((r + 1, c) in cells for r, c in cells) + sum((r, c + 1) in cells for r, c in cells)


def _reachable(cells: set[tuple[int, int]], start: tuple[int, int]) -> set[tuple[int, int]]:
    seen, queue = {start}, deque([start])
    while queue:
        r, c = queue.popleft()
        for nxt in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if nxt in cells and nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _assert_perfect(layout) -> None:
    H, W = layout.height, layout.width
    walls = layout.walls
    assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
    cells = _open_cells(walls)
    # A connected graph with (vertices - 1) edges is a tree: exactly one path between two cells.
    assert _adjacencies(cells) == len(cells) - 1
    assert _reachable(cells, (1, 1)) == cells
    assert layout.starts[1, 1] and layout.starts.sum() == 1
    assert layout.goals[H - 2, W - 2] and layout.goals.sum() == 1
    assert not layout.hazards.any()


@pytest.mark.parametrize(("height", "width"), [(5, 5), (9, 9), (7, 13), (21, 21), (63, 63)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mazes_are_perfect(height, width, seed):
    layout = generate_maze(height, width, np.random.default_rng(seed))
    assert (layout.height, layout.width) == (height, width)
    _assert_perfect(layout)
    # Our own map validation accepts it too (goal reachable from the start).
    parse_map(layout.to_ascii())


def test_same_seed_same_maze_different_seeds_different_mazes():
    a = generate_maze(11, 11, np.random.default_rng(7))
    b = generate_maze(11, 11, np.random.default_rng(7))
    assert np.array_equal(a.walls, b.walls)
    # An 11x11 maze has 5x5 cells: far more spanning trees than seeds tried here, so distinct
    # seeds giving one identical maze would point at the rng being ignored.
    walls = {generate_maze(11, 11, np.random.default_rng(s)).walls.tobytes() for s in range(10)}
    assert len(walls) == 10


def test_maze_spec_sampling_is_seeded():
    spec = MazeSpec(9, 9)
    first = spec.sample_many(4, seed=3)
    again = spec.sample_many(4, seed=3)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.next_state, b.next_state)
    assert len({m.layout.walls.tobytes() for m in first}) > 1
    assert first[0].name == "maze:9x9" and first[0].max_episode_steps == spec.steps == 162
    assert MazeSpec(9, 9, max_episode_steps=30).sample(np.random.default_rng(0)).max_episode_steps == 30


def test_maze_spec_parsing():
    spec = parse_maze_spec("maze:7x11")
    assert (spec.height, spec.width) == (7, 11)
    assert parse_maze_spec("empty") is None
    world = make_world("maze:9x9", slip=0.2, max_episode_steps=40)
    assert isinstance(world, MazeSpec) and world.options.slip == 0.2 and world.steps == 40


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("maze:8x8", "height 8 must be odd"),
        ("maze:9x8", "width 8 must be odd"),
        ("maze:3x3", "height 3"),
        ("maze:65x65", "height 65"),
        ("maze:9x", "bad maze spec 'maze:9x'"),
        ("maze:axb", "bad maze spec"),
        ("maze:", "bad maze spec"),
    ],
)
def test_bad_maze_specs_raise(spec, fragment):
    for build in (make_world, GridWorldEnv, lambda s: BatchedGridWorld(s, 2)):
        with pytest.raises(ValueError) as err:
            build(spec)
        assert fragment in str(err.value)
        assert "maze:9x9" in str(err.value)  # the fix, by example


def test_maze_rejects_unknown_option_and_bad_slip():
    with pytest.raises(ValueError, match=r"unknown map option\(s\) \['slipp'\]"):
        make_world("maze:9x9", slipp=0.1)
    with pytest.raises(ValueError, match="slip=1.5"):
        GridWorldEnv("maze:9x9", slip=1.5)


# --------------------------------------------------------------------------- in the envs


def test_grid_env_draws_a_fresh_maze_each_reset():
    env = GridWorldEnv("maze:9x9", obs_mode="image")
    mazes = []
    obs, _ = env.reset(seed=11)
    for _ in range(6):
        walls = env.mdp.layout.walls
        _assert_perfect(env.mdp.layout)
        assert np.array_equal(obs[0], walls)  # the observation shows the current maze
        mazes.append(walls.tobytes())
        obs, _ = env.reset()
    assert len(set(mazes)) == 6


def test_grid_env_maze_reset_seed_is_reproducible_and_uses_its_own_rng():
    env = GridWorldEnv("maze:9x9", obs_mode="image")
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        first, _ = env.reset(seed=5)
        trajectory = [env.step(a)[0] for a in (1, 3, 1, 3)]
        np.random.seed(1)  # a different global state must not matter
        _, key, pos, *_ = np.random.get_state()
        second, _ = env.reset(seed=5)
        assert np.array_equal(first, second)
        for a, obs in zip((1, 3, 1, 3), trajectory, strict=True):
            assert np.array_equal(env.step(a)[0], obs)
        _, key_after, pos_after, *_ = np.random.get_state()
        assert np.array_equal(key, key_after) and pos == pos_after  # nothing drawn from it
    finally:
        np.random.set_state(saved)
    other, _ = env.reset(seed=6)
    assert not np.array_equal(first, other)


def test_grid_env_maze_dynamics_follow_the_drawn_maze():
    env = GridWorldEnv("maze:9x9")
    env.reset(seed=2)
    walls = env.mdp.layout.walls
    # From the start (1, 1): a move into a wall stays, a move into an open cell goes there.
    for a, (dr, dc) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
        env.reset(seed=2)
        obs, *_ = env.step(a)
        expected = (1, 1) if walls[1 + dr, 1 + dc] else (1 + dr, 1 + dc)
        assert obs == expected[0] * 9 + expected[1]


def test_batched_env_holds_different_mazes():
    env = BatchedGridWorld("maze:9x9", 8, obs_mode="image", seed=0)
    obs, _ = env.reset()
    walls = {obs[b, 0].numpy().tobytes() for b in range(8)}
    assert len(walls) > 1
    assert env.num_worlds == 8
    for b in range(8):
        layout_walls = obs[b, 0].numpy().astype(bool)
        cells = _open_cells(layout_walls)
        assert _adjacencies(cells) == len(cells) - 1 and _reachable(cells, (1, 1)) == cells
        # The tables the env steps are the maze its observation shows: a wall blocks a move.
        w = int(env.world_id[b])
        for s in range(81):
            r, c = divmod(s, 9)
            if layout_walls[r, c]:
                continue
            for a, (dr, dc) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
                nr, nc = (r, c) if layout_walls[r + dr, c + dc] else (r + dr, c + dc)
                if not (r == 7 and c == 7):  # the goal absorbs
                    assert int(env.next_state[w, s, a, 0]) == nr * 9 + nc
    # Same seed, same mazes.
    again = BatchedGridWorld("maze:9x9", 8, obs_mode="image", seed=0).reset()[0]
    assert torch.equal(obs, again)


def test_batched_env_draws_a_fresh_maze_when_an_episode_ends():
    # A pool of 32 mazes; with a one-step time limit every step ends every episode.
    env = BatchedGridWorld("maze:9x9", 4, obs_mode="image", seed=1, maze_pool=32, max_episode_steps=1)
    assert env.num_worlds == 32
    obs, _ = env.reset()
    seen = [{obs[b, 0].numpy().tobytes()} for b in range(4)]
    for _ in range(10):
        previous = obs
        obs, _, _, truncated, info = env.step(torch.zeros(4, dtype=torch.long))
        assert truncated.all()
        # The finished episode's last observation still shows the maze it was played in.
        assert torch.equal(info["final_obs"][:, :3], previous[:, :3])
        for b in range(4):
            seen[b].add(obs[b, 0].numpy().tobytes())
    # Each row visits several mazes (11 draws from 32).
    assert all(len(s) > 3 for s in seen)
