"""The tabular core every world compiles to.

Maps, procedural mazes and imported gymnasium toy-text envs all produce a `TabularMDP`; the
gymnasium env, the batched torch env, the value-iteration oracle and the exact gradient all read
it. Nothing else re-derives dynamics.

Shapes: S states, A actions, O outcomes per (state, action) (1 when deterministic, 3 with slip).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

# Action meaning of our own maps. Imported toy-text envs keep their own (see `action_names`).
UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
ACTION_NAMES = ("up", "down", "left", "right")
# (d_row, d_col) per action.
ACTION_DELTAS = ((-1, 0), (1, 0), (0, -1), (0, 1))


@dataclass(frozen=True)
class GridLayout:
    """Where things are on the grid; state index = row * width + col.

    Only rendering and the image observation read it; dynamics live in the tables.
    """

    walls: np.ndarray  # (H, Wd) bool
    goals: np.ndarray  # (H, Wd) bool
    hazards: np.ndarray  # (H, Wd) bool
    starts: np.ndarray  # (H, Wd) bool

    @property
    def height(self) -> int:
        return int(self.walls.shape[0])

    @property
    def width(self) -> int:
        return int(self.walls.shape[1])

    def to_ascii(self) -> str:
        """The layout written back in the map format (`#`, `.`, `S`, `G`, `L`)."""
        rows = []
        for r in range(self.height):
            row = []
            for c in range(self.width):
                if self.walls[r, c]:
                    row.append("#")
                elif self.goals[r, c]:
                    row.append("G")
                elif self.hazards[r, c]:
                    row.append("L")
                elif self.starts[r, c]:
                    row.append("S")
                else:
                    row.append(".")
            rows.append("".join(row))
        return "\n".join(rows)

    def static_planes(self) -> np.ndarray:
        """(3, H, Wd) float32 planes: wall, goal, hazard (the image observation's first channels)."""
        return np.stack([self.walls, self.goals, self.hazards]).astype(np.float32)


@dataclass
class TabularMDP:
    """A finite MDP as tensors; termination and success belong to the transition.

    From state s, action a leads to outcome o with `prob[s, a, o]`: the agent moves to
    `next_state[s, a, o]`, is paid `reward[s, a, o]`, and the episode ends there if
    `done[s, a, o]` (a goal or lava cell entered, a passenger dropped off). `success[s, a, o]`
    marks the ending transitions that count as success; `success_rule` says in words which they
    are. Tables are total: every state has a row, also those never stepped from (walls, cells
    entered only by ending transitions).
    """

    next_state: torch.Tensor  # (S, A, O) int64
    prob: torch.Tensor  # (S, A, O) float32, sums to 1 over O
    reward: torch.Tensor  # (S, A, O) float32
    done: torch.Tensor  # (S, A, O) bool, the transition ends the episode
    success: torch.Tensor  # (S, A, O) bool, an ending transition that counts as success
    start: torch.Tensor  # (S,) float32, start distribution
    name: str = "mdp"
    action_names: tuple[str, ...] = ACTION_NAMES
    max_episode_steps: int = 100
    layout: GridLayout | None = field(default=None, repr=False)
    success_rule: str = "entering a goal cell"

    layouts_vary = False  # one fixed layout (MazeSpec: a family of them)

    def __post_init__(self) -> None:
        S, A, O = self.next_state.shape
        for label, t in (("prob", self.prob), ("reward", self.reward), ("done", self.done), ("success", self.success)):
            if tuple(t.shape) != (S, A, O):
                raise ValueError(f"{label} has shape {tuple(t.shape)}, expected {(S, A, O)}")
        if tuple(self.start.shape) != (S,):
            raise ValueError(f"start has shape {tuple(self.start.shape)}, expected {(S,)}")
        if not torch.allclose(self.prob.sum(-1), torch.ones(S, A, dtype=self.prob.dtype), atol=1e-5):
            raise ValueError("prob must sum to 1 over outcomes for every (state, action)")
        if abs(float(self.start.sum()) - 1.0) > 1e-5:
            raise ValueError("start distribution must sum to 1")
        if bool((self.success & ~self.done).any()):
            raise ValueError("a success transition must also end the episode (success implies done)")
        if not bool(torch.isfinite(self.reward).all()):
            raise ValueError("rewards must be finite numbers")
        if self.layout is not None and self.layout.height * self.layout.width != S:
            raise ValueError(f"layout has {self.layout.height}x{self.layout.width} cells, expected {S}")

    @property
    def num_states(self) -> int:
        return int(self.next_state.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.next_state.shape[1])

    @property
    def num_outcomes(self) -> int:
        return int(self.next_state.shape[2])

    def reachable(self) -> torch.Tensor:
        """(S,) bool: the states an episode can be in, i.e. the start states and every state a
        transition of positive probability that does not end the episode leads to from them
        (breadth-first over the tables). Walls and cells entered only by ending transitions are
        not."""
        moves = (self.prob > 0) & ~self.done  # (S, A, O)
        seen = self.start > 0  # (S,)
        frontier = seen.clone()
        while bool(frontier.any()):
            targets = self.next_state[frontier][moves[frontier]]  # (k,) states entered
            new = torch.zeros_like(seen)
            new[targets] = True
            frontier = new & ~seen
            seen |= new
        return seen

    def to(self, device: torch.device | str) -> TabularMDP:
        return replace(
            self,
            next_state=self.next_state.to(device),
            prob=self.prob.to(device),
            reward=self.reward.to(device),
            done=self.done.to(device),
            success=self.success.to(device),
            start=self.start.to(device),
        )


TABLES = ("next_state", "prob", "reward", "done", "success", "start")


def stack_tables(mdps: list[TabularMDP]) -> dict[str, torch.Tensor]:
    """Stack several same-sized MDPs (e.g. a batch of mazes) along a new leading world dim W."""
    shapes = {tuple(m.next_state.shape) for m in mdps}
    if len(shapes) != 1:
        raise ValueError(f"cannot batch worlds of different shapes {sorted(shapes)}; use one size")
    return {n: torch.stack([getattr(m, n) for m in mdps]) for n in TABLES}
