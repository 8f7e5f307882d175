"""ASCII maps: parsing, validation, built-in maps, and compiling a grid into the tabular core.

Map format, one character per cell (the grid edge acts as a wall):
    `#` wall   `.` floor   `S` start (several = uniform start)   `G` goal (terminal, success)
    `L` lava / hole (terminal, `hazard_reward`)
"""

from __future__ import annotations

import textwrap
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from envs.mdp import ACTION_DELTAS, GridLayout, TabularMDP

MAP_CHARS = {"#": "wall", ".": "floor", "S": "start", "G": "goal", "L": "lava"}
MAX_SIDE = 256  # sides up to 256: 65,536 cells
# The default time limit is 4 x cells up to this many steps (a 64 x 64 map). A larger map's is
# 4 x its longest shortest path from a start, which leaves every cell in reach: 4 x cells would
# make its episodes so long that a run's envs start few of them (and exploring starts are drawn
# only when an episode starts).
LONG_LIMIT = 16_384


@dataclass(frozen=True)
class MapOptions:
    """Reward and noise options applied when a grid is compiled to a `TabularMDP`."""

    slip: float = 0.0
    """Probability the move slips: each perpendicular direction with slip/2."""
    step_reward: float = 0.0
    """Reward of every move that does not enter a goal or a hazard."""
    goal_reward: float = 1.0
    """Reward for entering a goal (ends the episode)."""
    hazard_reward: float = 0.0
    """Reward for entering lava (ends the episode; 0 like a FrozenLake hole, losing the goal is
    the penalty)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.slip < 1.0:
            raise ValueError(f"slip={self.slip} is not a probability in [0, 1); pass e.g. slip=0.1")


# name -> (ascii, max_episode_steps). Layouts are ours; four_rooms follows the classic
# Sutton, Precup & Singh (1999) room layout and cliff the CliffWalking (Sutton & Barto ex. 6.6) one.
_BUILTIN: dict[str, tuple[str, int]] = {
    "empty": (
        """
        #########
        #S......#
        #.......#
        #.......#
        #.......#
        #.......#
        #.......#
        #......G#
        #########
        """,
        50,
    ),
    "four_rooms": (
        """
        #############
        #S....#.....#
        #.....#.....#
        #...........#
        #.....#.....#
        #.....#.....#
        ##.####.....#
        #.....###.###
        #.....#.....#
        #.....#.....#
        #...........#
        #.....#....G#
        #############
        """,
        100,
    ),
    "maze": (
        """
        ###########
        #S#.....#.#
        #.#.###.#.#
        #.#.#...#.#
        #.#.#.###.#
        #...#.#...#
        #####.#.###
        #.....#...#
        #.#######.#
        #........G#
        ###########
        """,
        100,
    ),
    "lava_gap": (
        """
        #########
        #S..L...#
        #...L...#
        #...L...#
        #.......#
        #...L...#
        #...L..G#
        #########
        """,
        50,
    ),
    "cliff": (
        """
        ............
        ............
        ............
        SLLLLLLLLLLG
        """,
        100,
    ),
    "lake8x8": (
        """
        S.......
        ....L...
        .L......
        ...L..L.
        .....L..
        .LL...L.
        .L..L...
        ...L...G
        """,
        100,
    ),
}
BUILTIN_MAPS: tuple[str, ...] = tuple(_BUILTIN)


def builtin_map_text(name: str) -> str:
    return textwrap.dedent(_BUILTIN[name][0]).strip("\n")


def parse_map(text: str) -> GridLayout:
    """Parse and validate an ASCII map; errors name the row/column and the fix."""
    # Strip every line, not just a common indent: a triple-quoted map whose first row follows
    # the opening quotes directly has an unindented first row and indented later ones.
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if not lines or not any(lines):
        raise ValueError("map is empty; write one row per line using # . S G L")
    width = len(lines[0])
    for r, ln in enumerate(lines):
        if len(ln) != width:
            raise ValueError(f"map row {r} has {len(ln)} cells but row 0 has {width}; all rows must be equally long")
        for c, ch in enumerate(ln):
            if ch not in MAP_CHARS:
                raise ValueError(
                    f"unknown map character {ch!r} at row {r}, column {c}; "
                    f"use one of {' '.join(MAP_CHARS)} (# wall, . floor, S start, G goal, L lava)"
                )
    height = len(lines)
    if height > MAX_SIDE or width > MAX_SIDE or height * width < 2:
        raise ValueError(f"map is {height}x{width}; sides must be at most {MAX_SIDE} and it needs at least 2 cells")
    grid = np.array([list(ln) for ln in lines])
    layout = GridLayout(walls=grid == "#", goals=grid == "G", hazards=grid == "L", starts=grid == "S")
    if not layout.starts.any():
        raise ValueError("map has no start; mark at least one cell with S")
    if not layout.goals.any():
        raise ValueError("map has no goal; mark at least one cell with G")
    _check_goal_reachable(layout)
    return layout


def _check_goal_reachable(layout: GridLayout) -> None:
    for r, c in zip(*np.nonzero(layout.starts), strict=True):
        if not _reaches(layout, int(r), int(c)):
            raise ValueError(
                f"no goal is reachable from the start at row {r}, column {c}; "
                "open a path of floor cells (.) from it to a G"
            )


def default_time_limit(layout: GridLayout) -> int:
    """4 x cells, or on a map of more than LONG_LIMIT / 4 cells 4 x the longest shortest path
    from a start to a cell an episode can be in."""
    cells = layout.height * layout.width
    if 4 * cells <= LONG_LIMIT:
        return 4 * cells
    return 4 * _farthest(layout)


def _farthest(layout: GridLayout) -> int:
    """Moves from the nearest start to the farthest cell an episode can be in (breadth-first,
    through cells that don't end the episode)."""
    dist = np.full((layout.height, layout.width), -1)
    queue = deque()
    for r, c in zip(*np.nonzero(layout.starts), strict=True):
        dist[r, c] = 0
        queue.append((int(r), int(c)))
    while queue:
        r, c = queue.popleft()
        if layout.goals[r, c] or layout.hazards[r, c]:
            continue
        for dr, dc in ACTION_DELTAS:
            nr, nc = r + dr, c + dc
            if 0 <= nr < layout.height and 0 <= nc < layout.width and not layout.walls[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return int(dist.max())


def _reaches(layout: GridLayout, r0: int, c0: int) -> bool:
    # Breadth-first search over cells that don't end the episode.
    seen = {(r0, c0)}
    queue = deque([(r0, c0)])
    while queue:
        r, c = queue.popleft()
        if layout.goals[r, c]:
            return True
        if layout.hazards[r, c]:
            continue
        for dr, dc in ACTION_DELTAS:
            nr, nc = r + dr, c + dc
            if 0 <= nr < layout.height and 0 <= nc < layout.width:
                if not layout.walls[nr, nc] and (nr, nc) not in seen:
                    seen.add((nr, nc))
                    queue.append((nr, nc))
    return False


def compile_grid(
    layout: GridLayout, options: MapOptions | None = None, *, name: str = "map", max_episode_steps: int = 100
) -> TabularMDP:
    """Compile a grid layout into the tabular core (state = row * width + col)."""
    opts = options or MapOptions()
    H, W = layout.height, layout.width
    S, A = H * W, len(ACTION_DELTAS)
    # The intended move, then the two perpendicular slips (up/down <-> left/right).
    perpendicular = {0: (2, 3), 1: (2, 3), 2: (0, 1), 3: (0, 1)}
    if opts.slip > 0:
        O, probs = 3, (1.0 - opts.slip, opts.slip / 2, opts.slip / 2)
    else:
        O, probs = 1, (1.0,)
    ends = layout.goals | layout.hazards
    next_state = np.zeros((S, A, O), dtype=np.int64)
    prob = np.zeros((S, A, O), dtype=np.float32)
    reward = np.zeros((S, A, O), dtype=np.float32)
    for r in range(H):
        for c in range(W):
            s = r * W + c
            for a in range(A):
                moves = (a, *perpendicular[a])[:O]
                for o, (move, p) in enumerate(zip(moves, probs, strict=True)):
                    prob[s, a, o] = p
                    if ends[r, c] or layout.walls[r, c]:
                        next_state[s, a, o] = s  # never stepped from: a zero-reward self-loop
                        continue
                    dr, dc = ACTION_DELTAS[move]
                    nr, nc = r + dr, c + dc
                    if not (0 <= nr < H and 0 <= nc < W) or layout.walls[nr, nc]:
                        nr, nc = r, c
                    next_state[s, a, o] = nr * W + nc
                    if layout.goals[nr, nc]:
                        reward[s, a, o] = opts.goal_reward
                    elif layout.hazards[nr, nc]:
                        reward[s, a, o] = opts.hazard_reward
                    else:
                        reward[s, a, o] = opts.step_reward
    # Entering a goal or lava cell ends the episode; entering a goal is a success.
    entered = torch.from_numpy(next_state)  # (S, A, O)
    moving = torch.from_numpy(~(ends | layout.walls).reshape(-1))[:, None, None]  # (S, 1, 1)
    done = torch.from_numpy(ends.reshape(-1))[entered] & moving
    success = torch.from_numpy(layout.goals.reshape(-1))[entered] & moving
    start = layout.starts.reshape(-1).astype(np.float32)
    return TabularMDP(
        next_state=entered,
        prob=torch.from_numpy(prob),
        reward=torch.from_numpy(reward),
        done=done,
        success=success,
        start=torch.from_numpy(start / start.sum()),
        name=name,
        max_episode_steps=max_episode_steps,
        layout=layout,
        success_rule="entering a goal cell (G)",
    )


def read_map_file(path: Path) -> str:
    """A map file's text; a file that is not UTF-8 text raises ValueError naming it."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"map file {path} is not a text file (byte {data[e.start]:#04x} at offset {e.start}); "
            "a map is text, one row per line using # . S G L"
        ) from None


def load_map(
    spec: str | Path, options: MapOptions | None = None, *, max_episode_steps: int | None = None, **option_kwargs: float
) -> TabularMDP:
    """Load a map as a `TabularMDP`.

    Args:
        spec: a built-in name (see `BUILTIN_MAPS`), a path to a text file, or a multi-line map string.
        options: reward/slip options; or pass them as keywords (`slip=0.1, step_reward=-0.01`).
        max_episode_steps: time limit the envs use; defaults to the built-in's, else
            `default_time_limit`.
    """
    if options is not None and option_kwargs:
        raise ValueError("pass either options=MapOptions(...) or option keywords, not both")
    unknown = set(option_kwargs) - set(MapOptions.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown map option(s) {sorted(unknown)}; valid: {sorted(MapOptions.__dataclass_fields__)}")
    opts = options or MapOptions(**option_kwargs)
    if isinstance(spec, Path):
        spec = str(spec)
    if spec in _BUILTIN:
        text, steps, name = builtin_map_text(spec), _BUILTIN[spec][1], spec
    elif "\n" in spec:
        text, steps, name = spec, None, "custom"
    elif Path(spec).is_file():
        text, steps, name = read_map_file(Path(spec)), None, Path(spec).stem
    else:
        raise ValueError(
            f"unknown map {spec!r}: not a built-in ({', '.join(BUILTIN_MAPS)}), not an existing file, "
            "and not a multi-line map string"
        )
    layout = parse_map(text)
    if steps is None:
        steps = default_time_limit(layout)
    return compile_grid(layout, opts, name=name, max_episode_steps=max_episode_steps or steps)
