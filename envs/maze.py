"""Seeded procedural perfect mazes (exactly one path between any two cells, so the goal is
always reachable).

A maze spec is written `maze:HxW` (H, W odd, >= 5, walls included); the start is the top-left
cell and the goal the bottom-right one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from envs.maps import MapOptions, compile_grid
from envs.mdp import GridLayout, TabularMDP

_SPEC = re.compile(r"^maze:(\d+)x(\d+)$")
# A procedural maze is seen as an image (the layout varies), and the policy's first dense layer
# grows with the image: sides stay below 64, as drawn maps did before they could reach 256.
MAZE_MAX_SIDE = 64


@dataclass(frozen=True)
class MazeSpec:
    """A family of random mazes of one size; `sample(rng)` draws one as a `TabularMDP`."""

    height: int
    width: int
    options: MapOptions = MapOptions()
    max_episode_steps: int | None = None

    def __post_init__(self) -> None:
        for label, n in (("height", self.height), ("width", self.width)):
            if n < 5 or n % 2 == 0 or n > MAZE_MAX_SIDE:
                raise ValueError(f"maze {label} {n} must be odd and between 5 and {MAZE_MAX_SIDE - 1} (e.g. maze:9x9)")

    @property
    def name(self) -> str:
        return f"maze:{self.height}x{self.width}"

    # A family of layouts: a policy must see which one it is in, and is scored on unseen ones.
    layouts_vary = True

    @property
    def steps(self) -> int:
        return self.max_episode_steps or 2 * self.height * self.width

    def sample(self, rng: np.random.Generator) -> TabularMDP:
        layout = generate_maze(self.height, self.width, rng)
        return compile_grid(layout, self.options, name=self.name, max_episode_steps=self.steps)

    def sample_many(self, n: int, seed: int) -> list[TabularMDP]:
        rng = np.random.default_rng(seed)
        return [self.sample(rng) for _ in range(n)]


def parse_maze_spec(spec: str, options: MapOptions | None = None) -> MazeSpec | None:
    """`maze:HxW` -> MazeSpec; anything else -> None."""
    m = _SPEC.match(spec.strip())
    if m is None:
        if spec.strip().startswith("maze:"):
            raise ValueError(f"bad maze spec {spec!r}; write maze:HxW with odd sides, e.g. maze:9x9")
        return None
    return MazeSpec(int(m.group(1)), int(m.group(2)), options or MapOptions())


def generate_maze(height: int, width: int, rng: np.random.Generator) -> GridLayout:
    """A perfect maze by randomised depth-first search (the "recursive backtracker").

    Cells live at odd (row, col); carving knocks out the wall cell between two neighbours.
    """
    walls = np.ones((height, width), dtype=bool)
    rows, cols = (height - 1) // 2, (width - 1) // 2
    visited = np.zeros((rows, cols), dtype=bool)
    stack = [(0, 0)]
    visited[0, 0] = True
    walls[1, 1] = False
    while stack:
        r, c = stack[-1]
        options = [
            (r + dr, c + dc)
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
            if 0 <= r + dr < rows and 0 <= c + dc < cols and not visited[r + dr, c + dc]
        ]
        if not options:
            stack.pop()
            continue
        nr, nc = options[rng.integers(len(options))]
        visited[nr, nc] = True
        walls[2 * nr + 1, 2 * nc + 1] = False
        walls[r + nr + 1, c + nc + 1] = False  # the wall cell between (r, c) and (nr, nc)
        stack.append((nr, nc))
    goals = np.zeros_like(walls)
    starts = np.zeros_like(walls)
    starts[1, 1] = True
    goals[height - 2, width - 2] = True
    return GridLayout(walls=walls, goals=goals, hazards=np.zeros_like(walls), starts=starts)
