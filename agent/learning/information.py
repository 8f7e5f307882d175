"""What a learner may know of its env: its information class, and the view that enforces it.

Every learner has exactly one class:

- ``samples``: the transitions (s, a, r, s') the agent experienced (PPO, REINFORCE).
- ``simulator``: samples, plus the env's derivative at the states the agent is in: the
  differentiable step from its current cell under every action, as a differentiable simulator
  gives (SHAC, Xu et al. 2022). The pathwise learner's class (its default critic, ``visited``).
- ``model``: the env's whole transition tables (value iteration, the oracle; the pathwise
  learner's ``--critic oracle`` ablation). Allowed for the exact evaluation and labelled ceilings.

Exploring starts are the env's reset distribution, shared by every class: the agent is then in the
start cell it was given, and may read that cell's rows like any other it is in.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

InformationClass = Literal["samples", "simulator", "model"]
INFORMATION_CLASSES: dict[str, str] = {
    "samples": "the transitions the agent experienced",
    "simulator": "experience, and the env's step from the cells the agent is in, for every action",
    "model": "the env's whole transition tables",
}

# What a simulator-class learner may read off the batched env besides `step_rows`: sizes, the
# current state, stepping, and the layout an image observation shows anyway. No table is here.
_SIMULATOR_ATTRIBUTES = frozenset(
    {
        "num_envs", "device", "obs_mode", "S", "A", "O", "num_worlds", "world_id", "state", "pos",
        "detach", "slip_gradient", "static_planes", "grid_shape", "observation_shape", "observe",
        "max_episode_steps", "elapsed",
    }
)  # fmt: skip


class SimulatorView:
    """A `BatchedGridWorld` as a simulator-class learner sees it.

    It forwards the attributes in `_SIMULATOR_ATTRIBUTES` and `step`; reading any other (the
    tables `next_state`, `reward_table`, `prob`, `done`, `tables`, `reachable`, ...) raises
    AttributeError. The one way to the dynamics is `step_rows(worlds, cells)`, the step from given
    cells under every action, which refuses a cell that no env has been in (`visited`, (W, S):
    every cell an env has started or stepped into since the view was made, the cells the envs are
    in then included). `on_read`, if set, is called with each read's (worlds, cells) first."""

    def __init__(self, env) -> None:
        object.__setattr__(self, "env", env)
        visited = torch.zeros(env.num_worlds, env.S, dtype=torch.bool, device=env.device)  # (W, S)
        visited[env.world_id, env.state] = True
        object.__setattr__(self, "visited", visited)
        object.__setattr__(self, "on_read", None)

    def __getattr__(self, name: str) -> Any:
        if name in _SIMULATOR_ATTRIBUTES:
            return getattr(self.env, name)
        raise AttributeError(
            f"a simulator-class learner may not read env.{name}: it sees the step from the cells its envs "
            "are in (SimulatorView.step_rows), not the env's tables"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "on_read":
            object.__setattr__(self, name, value)
        else:
            setattr(self.env, name, value)

    def step(self, action: torch.Tensor, observe: bool = True):
        """The env's step; the cells entered (and those of new episodes) become visited."""
        worlds = self.env.world_id  # (B,) a reset may draw another world (procedural mazes)
        out = self.env.step(action, observe=observe)
        self.visited[worlds, out[4]["final_state"]] = True  # the cell each move entered
        self.visited[self.env.world_id, self.env.state] = True  # where each env is now (after any reset)
        return out

    def step_rows(
        self, worlds: torch.Tensor, cells: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step from each (world, cell) (n,) under every action and outcome: (next cell,
        reward, continues, probability), (n, A, O) each. Raises ValueError on a cell no env has
        been in."""
        if self.on_read is not None:
            self.on_read(worlds, cells)
        if not bool(self.visited[worlds, cells].all()):
            raise ValueError("a simulator-class learner read the step from a cell that no env has been in")
        return self.env.step_rows(worlds, cells)

    def every_action(
        self, worlds: torch.Tensor, cells: torch.Tensor, outcome: torch.Tensor, expected: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`StepTables.every_action` from the cells the envs are in now (always visited)."""
        if self.on_read is not None:
            self.on_read(worlds, cells)
        return self.env.every_action(worlds, cells, outcome, expected)


def information_class(cfg) -> InformationClass:
    """The class of the learner a `TrainConfig` trains. pathwise is of the simulator class with
    the visited critic (or none) at a look-ahead of one one-hot step; with the oracle critic, or a
    look-ahead that differentiates the position (--lookahead > 1, or the soft actions of gs, whose
    derivative reads where every cell leads under the action taken), of the model class."""
    if cfg.algo != "pathwise":
        return "samples"
    one_step = cfg.lookahead == 1 and cfg.estimator != "gs"
    return "simulator" if cfg.critic != "oracle" and one_step else "model"


def view_for(information: InformationClass, env, cache: dict) -> Any:
    """The env as a learner of `information` may see it: a `SimulatorView` (one per env, kept in
    `cache` so its visited cells accumulate over updates) for the simulator class, the env itself
    for the model class. Samples-class learners step the env on the integer path only."""
    if information != "simulator":
        return env
    view = cache.get(id(env))
    if view is None or view.env is not env:
        view = cache[id(env)] = SimulatorView(env)
    return view
