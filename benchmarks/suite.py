"""The generalisation suite: worlds of many families, split into a tuning half and a held-out half.

Every world is a `SuiteWorld`: a name, a family, its half, and the `TrainConfig` fields that
select it (`env`, `env_kwargs`, map options). Our own layouts are generated from seeds as ASCII
maps, so each one is a plain map a user could have written; the gymnasium classics come by id.

The split is fixed here, in code, and was committed before any learner setting was tuned on the
suite: within each family the worlds alternate tuning / held-out in the order they are listed.
Tuning looks only at the tuning half; results quote the held-out half.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.maze import generate_maze

TUNING, HELD_OUT, BUILTIN = "tuning", "held-out", "builtin"


@dataclass(frozen=True)
class SuiteWorld:
    name: str
    family: str
    split: str
    env: str  # a map (multi-line string) or a gymnasium id
    env_kwargs: tuple[str, ...] = ()
    options: dict[str, float] = field(default_factory=dict)  # slip, step_reward, hazard_reward

    def config_fields(self) -> dict[str, Any]:
        """The `TrainConfig` fields that select this world."""
        return {"env": self.env, "env_kwargs": self.env_kwargs, **self.options}


# ----------------------------------------------------------------------------- layouts
def _text(grid: np.ndarray) -> str:
    return "\n".join("".join(row) for row in grid)


def _boxed(h: int, w: int) -> np.ndarray:
    grid = np.full((h, w), ".", dtype="<U1")
    grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = "#"
    return grid


def corridor(rng: np.random.Generator, side: int, min_len: int) -> str:
    """A one-cell-wide winding corridor with no branches: a self-avoiding walk on the odd cells
    of a `side` x `side` box, start at one end and goal at the other."""
    cells = (side - 1) // 2
    for _ in range(1000):
        path = [(0, 0)]
        seen = {(0, 0)}
        while True:
            r, c = path[-1]
            options = [
                (r + dr, c + dc)
                for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
                if 0 <= r + dr < cells and 0 <= c + dc < cells and (r + dr, c + dc) not in seen
            ]
            # Keep the corridor one cell wide: never step next to an earlier part of the path.
            options = [
                p
                for p in options
                if sum((p[0] + dr, p[1] + dc) in seen for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))) == 1
            ]
            if not options:
                break
            nxt = options[rng.integers(len(options))]
            path.append(nxt)
            seen.add(nxt)
        if len(path) >= min_len:
            break
    grid = np.full((side, side), "#", dtype="<U1")
    for (r, c), (nr, nc) in zip(path, path[1:], strict=False):
        grid[2 * r + 1, 2 * c + 1] = grid[2 * nr + 1, 2 * nc + 1] = "."
        grid[r + nr + 1, c + nc + 1] = "."
    (r0, c0), (r1, c1) = path[0], path[-1]
    grid[2 * r0 + 1, 2 * c0 + 1], grid[2 * r1 + 1, 2 * c1 + 1] = "S", "G"
    return _text(grid)


def spiral(side: int, inward: bool, turn: int) -> str:
    """A square spiral corridor from the outer ring to the centre (`inward`: start outside, goal
    at the centre; else the reverse), rotated by `turn` quarter turns."""
    grid = np.full((side, side), "#", dtype="<U1")
    r, c = 1, 1
    dr, dc = 0, 1
    top, bottom, left, right = 1, side - 2, 1, side - 2
    path = [(r, c)]
    # Walk the ring, shrinking the bounds by two after each side so walls stay between rings.
    while top <= bottom and left <= right:
        nr, nc = r + dr, c + dc
        if not (top <= nr <= bottom and left <= nc <= right):
            if (dr, dc) == (0, 1):
                dr, dc = 1, 0
                top += 2
            elif (dr, dc) == (1, 0):
                dr, dc = 0, -1
                right -= 2
            elif (dr, dc) == (0, -1):
                dr, dc = -1, 0
                bottom -= 2
            else:
                dr, dc = 0, 1
                left += 2
            nr, nc = r + dr, c + dc
            if not (top - 2 <= nr <= bottom + 2 and left - 2 <= nc <= right + 2) or grid[nr, nc] == ".":
                break
            if (dr, dc) == (-1, 0) and nr < top:
                break
        if (nr, nc) in path or not (0 < nr < side - 1 and 0 < nc < side - 1):
            break
        r, c = nr, nc
        path.append((r, c))
        grid[r, c] = "."
    grid[path[0]] = "."
    start, goal = (path[0], path[-1]) if inward else (path[-1], path[0])
    grid[start], grid[goal] = "S", "G"
    return _text(np.rot90(grid, turn))


def serpentine(rng: np.random.Generator, rows: int, width: int) -> str:
    """Floor rows separated by rows of lava, each with one gap at alternating ends: the path
    snakes between them, and one wrong step ends the episode."""
    h = 2 * rows + 1
    grid = _boxed(h, width + 2)
    for i in range(1, rows):
        lava_row = 2 * i
        grid[lava_row, 1:-1] = "L"
        gap = width if i % 2 == 1 else 1
        grid[lava_row, gap] = "."
    flip = rng.integers(2) == 1
    grid[1, 1] = "S"
    last = 2 * rows - 1
    grid[last, 1 if rows % 2 == 0 else width] = "G"
    if flip:  # mirror left-right so the first gap can be on either side
        grid = grid[:, ::-1]
    return _text(grid)


def lava_field(rng: np.random.Generator, side: int, density: float) -> str:
    """An open room with lava scattered at `density`; start and goal in opposite corners, and
    the goal reachable (redrawn until it is)."""
    from envs.maps import parse_map

    for _ in range(1000):
        grid = _boxed(side, side)
        inner = grid[1:-1, 1:-1]
        lava = rng.random(inner.shape) < density
        inner[lava] = "L"
        inner[0, 0], inner[-1, -1] = "S", "G"
        for r, c in ((0, 1), (1, 0), (-1, -2), (-2, -1)):  # keep the corners' exits open
            inner[r, c] = "."
        try:
            parse_map(_text(grid))
            return _text(grid)
        except ValueError:
            continue
    raise RuntimeError("no reachable lava field drawn")


def bridge(rng: np.random.Generator, length: int, width: int, bends: int) -> str:
    """Start bank, a lava lake `length` cells across with a one-cell-wide bridge that bends
    `bends` times, and the goal bank."""
    h, w = width + 2, length + 4
    grid = _boxed(h, w)
    grid[1:-1, 2:-2] = "L"
    row = int(rng.integers(1, h - 1))
    turns = sorted(rng.choice(np.arange(3, w - 3), size=bends, replace=False)) if bends else []
    for col in range(2, w - 2):
        grid[row, col] = "."
        if col in turns:
            new = int(rng.integers(1, h - 1))
            lo, hi = sorted((row, new))
            grid[lo : hi + 1, col] = "."
            row = new
    grid[int(rng.integers(1, h - 1)), 1] = "S"
    grid[int(rng.integers(1, h - 1)), w - 2] = "G"
    return _text(grid)


def rooms(rng: np.random.Generator, room: int, n: int) -> str:
    """An n x n grid of rooms, `room` cells a side, with one door in each shared wall at a
    random place; start in the first room, goal in the last."""
    side = n * (room + 1) + 1
    grid = np.full((side, side), ".", dtype="<U1")
    for k in range(n + 1):
        grid[k * (room + 1), :] = "#"
        grid[:, k * (room + 1)] = "#"
    for i in range(n):
        for j in range(n):
            top, left = i * (room + 1) + 1, j * (room + 1) + 1
            if j + 1 < n:  # door to the right
                grid[top + int(rng.integers(room)), left + room] = "."
            if i + 1 < n:  # door below
                grid[top + room, left + int(rng.integers(room))] = "."
    grid[1 + int(rng.integers(room)), 1 + int(rng.integers(room))] = "S"
    grid[side - 2 - int(rng.integers(room)), side - 2 - int(rng.integers(room))] = "G"
    return _text(grid)


def maze(rng: np.random.Generator, side: int, loops: int = 0) -> str:
    """A fixed perfect maze (one path between any two cells, many dead ends), with `loops` extra
    walls knocked out to make cycles."""
    layout = generate_maze(side, side, rng)
    grid = np.array([list(row) for row in layout.to_ascii().splitlines()])
    inner = [(r, c) for r in range(1, side - 1) for c in range(1, side - 1) if grid[r, c] == "#" and (r + c) % 2 == 1]
    for k in rng.permutation(len(inner))[:loops]:
        grid[inner[k]] = "."
    return _text(grid)


def many_ends(rng: np.random.Generator, side: int, starts: int, goals: int) -> str:
    """A perfect maze with some loops, several start cells and several goals."""
    grid = np.array([list(row) for row in maze(rng, side, loops=side).splitlines()])
    grid[grid == "S"] = "."
    grid[grid == "G"] = "."
    free = [(r, c) for r, c in zip(*np.nonzero(grid == "."), strict=True)]
    picks = rng.choice(len(free), size=starts + goals, replace=False)
    for k, p in enumerate(picks):
        grid[free[p]] = "S" if k < starts else "G"
    return _text(grid)


# ----------------------------------------------------------------------------- the suite
def _family(family: str, maps: list[tuple[str, str, dict[str, float]]]) -> list[SuiteWorld]:
    """Worlds of one family, alternating tuning / held-out in the order given."""
    return [
        SuiteWorld(
            name=f"{family}-{label}", family=family, split=TUNING if i % 2 == 0 else HELD_OUT, env=text, options=options
        )
        for i, (label, text, options) in enumerate(maps)
    ]


def _rng(family: str, i: int) -> np.random.Generator:
    # Seeded by the family's name and the world's index: the suite is the same on every machine.
    return np.random.default_rng([sum(map(ord, family)), i])


def build_suite() -> list[SuiteWorld]:
    """The whole suite (both halves), in a fixed order."""
    worlds: list[SuiteWorld] = []
    worlds += _family(
        "corridor",
        [
            (f"{side}x{side}-{i}", corridor(_rng("corridor", i), side, min_len=side * side // 10), {})
            for i, side in enumerate((11, 13, 15, 17))
        ],
    )
    worlds += _family(
        "spiral",
        [
            (f"{side}x{side}-{'in' if inward else 'out'}", spiral(side, inward, turn), {})
            for side, inward, turn in ((11, True, 0), (13, False, 1), (15, True, 2), (17, False, 3))
        ],
    )
    worlds += _family(
        "serpentine",
        [
            (f"{rows}x{width}", serpentine(_rng("serpentine", i), rows, width), {})
            for i, (rows, width) in enumerate(((4, 8), (5, 10), (6, 9), (7, 12)))
        ],
    )
    worlds += _family(
        "lava-field",
        [
            (f"{side}x{side}-{int(100 * d)}pct", lava_field(_rng("lava-field", i), side, d), {})
            for i, (side, d) in enumerate(((9, 0.15), (11, 0.2), (13, 0.2), (15, 0.25)))
        ],
    )
    worlds += _family(
        "bridge",
        [
            (f"{length}-bends{bends}", bridge(_rng("bridge", i), length, width, bends), {})
            for i, (length, width, bends) in enumerate(((8, 5, 0), (10, 5, 1), (12, 7, 2), (16, 7, 3)))
        ],
    )
    worlds += _family(
        "rooms",
        [
            (f"{n}x{n}-rooms-{room}", rooms(_rng("rooms", i), room, n), {})
            for i, (room, n) in enumerate(((4, 2), (5, 2), (4, 3), (5, 3)))
        ],
    )
    worlds += _family(
        "maze",
        [
            (f"{side}x{side}-{i}", maze(_rng("maze", i), side), {})
            for i, side in enumerate((9, 11, 13, 15, 17, 19, 21, 25))
        ],
    )
    worlds += _family(
        "many-ends",
        [
            (f"{side}x{side}-{s}S-{g}G", many_ends(_rng("many-ends", i), side, s, g), {})
            for i, (side, s, g) in enumerate(((11, 3, 2), (13, 2, 3), (15, 4, 2), (17, 3, 3)))
        ],
    )
    # Maps of the size users draw: rooms of rooms over more than 128 cells a side, a few hundred
    # moves from start to goal (the time limit is then 4 x the longest path, `envs.maps`).
    worlds += _family(
        "large",
        [
            (f"{n}x{n}-rooms-{room}", rooms(_rng("large", i), room, n), {})
            for i, (room, n) in enumerate(((31, 4), (32, 4)))
        ],
    )
    # Slip: the same kinds of layout, each move going sideways with probability `slip`.
    worlds += _family(
        "slip",
        [
            ("rooms-0.1", rooms(_rng("slip", 0), 4, 2), {"slip": 0.1}),
            ("maze-0.1", maze(_rng("slip", 1), 11, loops=4), {"slip": 0.1}),
            ("lava-field-0.2", lava_field(_rng("slip", 2), 9, 0.1), {"slip": 0.2}),
            ("corridor-0.2", corridor(_rng("slip", 3), 11, min_len=10), {"slip": 0.2}),
            ("rooms-0.3", rooms(_rng("slip", 4), 5, 2), {"slip": 0.3}),
            ("bridge-0.1", bridge(_rng("slip", 5), 8, 5, 1), {"slip": 0.1}),
        ],
    )
    # Reward signs and scales other than "1 at the goal": a cost per step, a large penalty in lava.
    worlds += _family(
        "reward-scale",
        [
            (
                "lava-field-step-1-lava-100",
                lava_field(_rng("reward-scale", 0), 11, 0.15),
                {"step_reward": -1.0, "hazard_reward": -100.0},
            ),
            ("maze-step-0.01", maze(_rng("reward-scale", 1), 13), {"step_reward": -0.01}),
            (
                "bridge-step-1-lava-10",
                bridge(_rng("reward-scale", 2), 10, 5, 1),
                {"step_reward": -1.0, "hazard_reward": -10.0},
            ),
            ("rooms-step-1", rooms(_rng("reward-scale", 3), 4, 2), {"step_reward": -1.0}),
            ("serpentine-lava-5", serpentine(_rng("reward-scale", 4), 5, 9), {"hazard_reward": -5.0}),
            ("spiral-step-0.1", spiral(13, True, 1), {"step_reward": -0.1}),
        ],
    )
    gym = [
        ("FrozenLake8x8-slippery", "FrozenLake-v1", ("map_name:8x8", "is_slippery:True")),
        ("FrozenLake4x4-slippery", "FrozenLake-v1", ("map_name:4x4", "is_slippery:True")),
        ("CliffWalking", "CliffWalking-v1", ()),
        ("CliffWalking-slippery", "CliffWalking-v1", ("is_slippery:True",)),
        ("Taxi", "Taxi-v4", ()),
        ("Taxi-rainy", "Taxi-v4", ("is_rainy:True",)),
        ("FrozenLake8x8", "FrozenLake-v1", ("map_name:8x8", "is_slippery:False")),
        ("FrozenLake-random8x8-slippery", "FrozenLake-v1", (f"desc:{random_lake(8, 0)}", "is_slippery:True")),
    ]
    worlds += [
        SuiteWorld(name=name, family="gymnasium", split=TUNING if i % 2 == 0 else HELD_OUT, env=env, env_kwargs=kwargs)
        for i, (name, env, kwargs) in enumerate(gym)
    ]
    return worlds


def random_lake(size: int, seed: int) -> str:
    """A FrozenLake `desc` drawn by gymnasium's own generator, written as rows joined by `/`."""
    from gymnasium.envs.toy_text.frozen_lake import generate_random_map

    return "/".join(generate_random_map(size=size, p=0.8, seed=seed))


SUITE: list[SuiteWorld] = build_suite()
# The package's own built-in maps: not part of the split (they were there before the suite), run
# to check that they stay solved.
# `maze:9x9` is the procedural family: a pool of training mazes, scored on mazes it never saw.
BUILTINS: list[SuiteWorld] = [
    SuiteWorld(name=f"builtin-{m.replace(':', '-')}", family="builtin", split=BUILTIN, env=m)
    for m in ("empty", "four_rooms", "maze", "lava_gap", "cliff", "lake8x8", "maze:9x9")
]


def worlds(split: str | None = None, families: list[str] | None = None) -> list[SuiteWorld]:
    """The suite's worlds, optionally one half (or the built-in maps) and some families only."""
    pool = BUILTINS if split == BUILTIN else SUITE
    return [w for w in pool if (split is None or w.split == split) and (families is None or w.family in families)]
