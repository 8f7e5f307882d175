"""envs.maps (and the TabularMDP it compiles to): parsing, validation, built-ins, and the tables.

Expected moves are recomputed here from the ASCII text alone (`_move`), independently of
`compile_grid`, so a table that disagrees with the map is caught.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from envs import BUILTIN_MAPS, MapOptions, TabularMDP, compile_grid, load_map, parse_map
from envs.maps import builtin_map_text

# (d_row, d_col) of our action meaning 0 up, 1 down, 2 left, 3 right, written out again here.
DELTAS = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}
PERPENDICULAR = {0: {2, 3}, 1: {2, 3}, 2: {0, 1}, 3: {0, 1}}

SMALL = """
S.#
.#.
..G
"""


def _grid(text: str) -> list[str]:
    return [ln.strip() for ln in text.strip().splitlines()]


def _move(grid: list[str], r: int, c: int, a: int) -> tuple[int, int]:
    """Where action a leads from (r, c): off the grid or into a wall means staying put."""
    nr, nc = r + DELTAS[a][0], c + DELTAS[a][1]
    if not (0 <= nr < len(grid) and 0 <= nc < len(grid[0])) or grid[nr][nc] == "#":
        return r, c
    return nr, nc


def _live_cells(grid: list[str]):
    """Cells the agent can stand on and step from (not wall, not goal, not lava)."""
    for r, row in enumerate(grid):
        for c, ch in enumerate(row):
            if ch in ".S":
                yield r, c


# --------------------------------------------------------------------------- built-ins


def test_builtin_set_covers_the_documented_worlds():
    assert {"empty", "four_rooms", "maze", "lava_gap", "cliff", "lake8x8"} <= set(BUILTIN_MAPS)


@pytest.mark.parametrize("name", BUILTIN_MAPS)
def test_builtin_loads_with_consistent_tables(name):
    mdp = load_map(name)
    grid = _grid(builtin_map_text(name))
    H, W = len(grid), len(grid[0])
    S = H * W
    assert mdp.name == name
    assert (mdp.num_states, mdp.num_actions, mdp.num_outcomes) == (S, 4, 1)
    assert mdp.next_state.dtype == torch.int64 and mdp.prob.dtype == torch.float32
    assert tuple(mdp.reward.shape) == (S, 4, 1)
    assert tuple(mdp.done.shape) == tuple(mdp.success.shape) == (S, 4, 1) and tuple(mdp.start.shape) == (S,)
    torch.testing.assert_close(mdp.prob.sum(-1), torch.ones(S, 4))
    assert mdp.layout.to_ascii() == "\n".join(grid)
    flat = "".join(grid)
    # A move from a cell an agent can stand on ends the episode exactly when it enters a goal or
    # lava, and succeeds exactly when it enters a goal; start uniform over the S cells.
    for s, ch in enumerate(flat):
        entered = [flat[int(n)] for n in mdp.next_state[s, :, 0]]
        moving = ch in ".S"
        assert mdp.done[s, :, 0].tolist() == [moving and e in "GL" for e in entered]
        assert mdp.success[s, :, 0].tolist() == [moving and e == "G" for e in entered]
    n_starts = flat.count("S")
    assert n_starts >= 1
    torch.testing.assert_close(mdp.start, torch.tensor([1.0 / n_starts if ch == "S" else 0.0 for ch in flat]))
    assert mdp.max_episode_steps > 0


def test_lake8x8_looks_like_frozenlake_8x8():
    grid = _grid(builtin_map_text("lake8x8"))
    assert (len(grid), len(grid[0])) == (8, 8)
    assert grid[0][0] == "S" and grid[7][7] == "G"
    assert "#" not in "".join(grid) and "".join(grid).count("L") >= 5  # open grid with holes


def test_cliff_looks_like_cliffwalking():
    grid = _grid(builtin_map_text("cliff"))
    assert grid[-1] == "S" + "L" * 10 + "G"
    assert all(row == "." * 12 for row in grid[:-1])


# --------------------------------------------------------------------------- compile_grid


def test_small_map_moves_by_hand():
    # Written out by hand for SMALL (state = row * 3 + col): walls at 2 and 4, goal at 8.
    mdp = load_map(SMALL)
    ns = mdp.next_state[:, :, 0]
    assert ns[0].tolist() == [0, 3, 0, 1]  # up: edge, down: 3, left: edge, right: 1
    assert ns[1].tolist() == [1, 1, 0, 1]  # up: edge, down: wall 4, left: 0, right: wall 2
    assert ns[3].tolist() == [0, 6, 3, 3]  # right: wall 4
    assert ns[7].tolist() == [7, 7, 6, 8]  # up: wall 4, down: edge, right: goal
    assert ns[5].tolist() == [5, 8, 5, 5]  # up: wall 2, down: goal, left: wall 4, right: edge


@pytest.mark.parametrize("name", BUILTIN_MAPS)
def test_deterministic_moves_match_the_map(name):
    grid = _grid(builtin_map_text(name))
    W = len(grid[0])
    mdp = load_map(name)
    for r, c in _live_cells(grid):
        for a in range(4):
            nr, nc = _move(grid, r, c, a)
            assert int(mdp.next_state[r * W + c, a, 0]) == nr * W + nc, (name, r, c, a)


@pytest.mark.parametrize("slip", [0.1, 0.5, 0.9])
def test_slip_splits_between_intended_and_perpendicular_moves(slip):
    text = builtin_map_text("four_rooms")
    grid = _grid(text)
    W = len(grid[0])
    mdp = load_map("four_rooms", slip=slip)
    assert mdp.num_outcomes == 3
    for r, c in _live_cells(grid):
        s = r * W + c
        for a in range(4):
            torch.testing.assert_close(mdp.prob[s, a], torch.tensor([1 - slip, slip / 2, slip / 2]))
            intended = _move(grid, r, c, a)
            assert int(mdp.next_state[s, a, 0]) == intended[0] * W + intended[1]
            slips = {int(mdp.next_state[s, a, 1]), int(mdp.next_state[s, a, 2])}
            expected = {_move(grid, r, c, p)[0] * W + _move(grid, r, c, p)[1] for p in PERPENDICULAR[a]}
            assert slips == expected


def test_no_slip_means_one_outcome():
    assert load_map("empty", slip=0.0).num_outcomes == 1
    assert load_map("empty", slip=0.01).num_outcomes == 3


def test_rewards_goal_hazard_step():
    text = """
    #######
    #S...L#
    #.....#
    #....G#
    #######
    """
    opts = MapOptions(step_reward=-0.05, goal_reward=2.5, hazard_reward=-3.0)
    mdp = load_map(text, opts)
    grid = _grid(text)
    W = len(grid[0])
    rewards = {"G": 2.5, "L": -3.0, ".": -0.05, "S": -0.05}
    for r, c in _live_cells(grid):
        for a in range(4):
            nr, nc = _move(grid, r, c, a)  # bumping into a wall is an ordinary step
            assert float(mdp.reward[r * W + c, a, 0]) == pytest.approx(rewards[grid[nr][nc]])


@pytest.mark.parametrize("slip", [0.0, 0.3])
def test_ending_cells_self_loop_with_zero_reward(slip):
    # Goal and lava cells are entered only by ending transitions; their own rows are never
    # stepped from and stay total: zero-reward self-loops that end nothing.
    mdp = load_map("lava_gap", slip=slip, step_reward=-0.1)
    ends = [s for s, ch in enumerate(builtin_map_text("lava_gap").replace("\n", "")) if ch in "GL"]
    assert len(ends) == 6  # five lava cells and a goal
    assert not mdp.reachable()[ends].any()
    for s in ends:
        assert not mdp.done[s].any()
        assert (mdp.next_state[s] == s).all()
        assert (mdp.reward[s] == 0).all()
        torch.testing.assert_close(mdp.prob[s].sum(-1), torch.ones(4))


def test_compile_grid_directly():
    layout = parse_map(SMALL)
    mdp = compile_grid(layout, name="small", max_episode_steps=7)
    assert (mdp.name, mdp.max_episode_steps, mdp.num_states) == ("small", 7, 9)
    torch.testing.assert_close(mdp.next_state, load_map(SMALL).next_state)


def test_tabular_mdp_validates_shapes_and_probabilities():
    mdp = load_map(SMALL)
    fields = dict(
        next_state=mdp.next_state, prob=mdp.prob, reward=mdp.reward, done=mdp.done, success=mdp.success, start=mdp.start
    )
    with pytest.raises(ValueError, match="reward has shape"):
        TabularMDP(**{**fields, "reward": mdp.reward[:, :3]})
    with pytest.raises(ValueError, match="done has shape"):
        TabularMDP(**{**fields, "done": mdp.done[:-1]})
    with pytest.raises(ValueError, match="success implies done"):
        TabularMDP(**{**fields, "success": torch.ones_like(mdp.success)})
    with pytest.raises(ValueError, match="finite"):
        TabularMDP(**{**fields, "reward": mdp.reward.masked_fill(mdp.done, float("nan"))})
    with pytest.raises(ValueError, match="sum to 1 over outcomes"):
        TabularMDP(**{**fields, "prob": mdp.prob * 0.5})
    with pytest.raises(ValueError, match="start distribution"):
        TabularMDP(**{**fields, "start": mdp.start * 2})


# --------------------------------------------------------------------------- load_map sources


def _same_tables(a: TabularMDP, b: TabularMDP) -> None:
    for field in ("next_state", "prob", "reward", "done", "success", "start"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_load_from_file(tmp_path):
    path = tmp_path / "my_room.txt"
    path.write_text(builtin_map_text("maze") + "\n")
    for spec in (str(path), path):
        mdp = load_map(spec)
        assert mdp.name == "my_room"
        assert mdp.max_episode_steps == 4 * 11 * 11  # default for non built-ins: 4 * cells
        _same_tables(mdp, load_map("maze"))


def test_load_from_string_plain_and_indented():
    plain = "#####\n#S.G#\n#####"
    indented = """
        #####
        #S.G#
        #####
    """
    first_row_unindented = """#####
        #S.G#
        #####"""
    ref = load_map(plain)
    assert ref.name == "custom" and ref.num_states == 15
    _same_tables(load_map(indented), ref)
    _same_tables(load_map(first_row_unindented), ref)


def test_load_options_and_time_limit():
    mdp = load_map("empty", slip=0.2, step_reward=-0.01, max_episode_steps=7)
    assert mdp.max_episode_steps == 7 and mdp.num_outcomes == 3
    assert load_map("empty").max_episode_steps == 50
    _same_tables(load_map("empty", MapOptions(slip=0.2)), load_map("empty", slip=0.2))


# --------------------------------------------------------------------------- errors

BAD_MAPS = [
    ("#####\n#..G#\n#####", ["no start", "S"]),
    ("#####\n#S..#\n#####", ["no goal", "G"]),
    ("#####\n#S#G#\n#####", ["row 1, column 1", "open a path"]),
    ("#####\n#SLG#\n#####", ["row 1, column 1", "open a path"]),  # only through lava
    ("######\n#S..G#\n#....#\n#.#.#\n######", ["row 3", "5 cells", "equally long"]),
    ("#####\n#S.G#\n#.?.#\n#####", ["'?'", "row 2, column 2", "# . S G L"]),
    ("#####\n#S.G#\n#.x..\n#####", ["'x'", "row 2, column 2"]),
    ("S" + "." * 255 + "G\n" + ("." * 257 + "\n") * 9, ["10x257", "at most 256"]),
    ("\n\n", ["empty"]),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_MAPS)
def test_bad_map_names_the_place_and_the_fix(text, fragments):
    with pytest.raises(ValueError) as err:
        load_map(text)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_unknown_spec():
    with pytest.raises(ValueError, match="unknown map 'emtpy'") as err:
        load_map("emtpy")
    assert all(name in str(err.value) for name in BUILTIN_MAPS)


def test_unknown_option():
    with pytest.raises(ValueError, match=r"unknown map option\(s\) \['slipp'\]") as err:
        load_map("empty", slipp=0.1)
    assert "slip" in str(err.value).split("valid")[1]
    with pytest.raises(ValueError, match="not both"):
        load_map("empty", MapOptions(), slip=0.1)


@pytest.mark.parametrize("slip", [-0.1, 1.0, 1.5, float("nan")])
def test_slip_out_of_range(slip):
    with pytest.raises(ValueError, match=r"slip=.* is not a probability in \[0, 1\)"):
        load_map("empty", slip=slip)
    with pytest.raises(ValueError, match="slip="):
        MapOptions(slip=slip)


def test_reachability_check_agrees_with_bfs_on_builtins():
    # Every built-in passes validation, and an independent BFS agrees the goal is reachable.
    for name in BUILTIN_MAPS:
        grid = _grid(builtin_map_text(name))
        start = next((r, c) for r, row in enumerate(grid) for c, ch in enumerate(row) if ch == "S")
        seen, queue, found = {start}, deque([start]), False
        while queue:
            r, c = queue.popleft()
            if grid[r][c] == "G":
                found = True
                break
            if grid[r][c] == "L":
                continue
            for a in range(4):
                nxt = _move(grid, r, c, a)
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        assert found, name
        assert np.array_equal(parse_map(builtin_map_text(name)).starts, load_map(name).layout.starts)


def test_the_default_time_limit_is_four_per_cell_then_four_per_step_of_the_longest_path():
    from envs.maps import LONG_LIMIT, default_time_limit

    def room(side: int) -> str:
        rows = ["#" * side] + ["#" + "." * (side - 2) + "#" for _ in range(side - 2)] + ["#" * side]
        rows[1] = "#S" + rows[1][2:]
        rows[-2] = rows[-2][:-2] + "G#"
        return "\n".join(rows)

    assert load_map(room(64)).max_episode_steps == 4 * 64 * 64 == LONG_LIMIT
    big = load_map(room(256))  # 65,536 cells: 4 per cell would be 262,144 steps
    assert big.num_states == 256 * 256 and big.max_episode_steps == 4 * (254 - 1) * 2  # corner to corner
    # A 255 x 255 serpentine: the only way to the goal winds through every row (127 rows of 253).
    rows = ["#" * 255]
    for k in range(127):
        rows.append("#" + "." * 253 + "#")
        gap = 253 if k % 2 == 0 else 1
        rows.append("#" * gap + "." + "#" * (254 - gap) if k < 126 else "#" * 255)
    rows[1] = "#S" + rows[1][2:]
    rows[-2] = rows[-2][:-2] + "G#"
    layout = parse_map("\n".join(rows))
    path = 127 * 252 + 126 * 2  # along each row, and two moves down through each gap
    assert default_time_limit(layout) == 4 * path > LONG_LIMIT  # more than 4 x cells' cap
    assert load_map("\n".join(rows), max_episode_steps=99).max_episode_steps == 99
