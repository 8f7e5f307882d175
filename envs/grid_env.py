"""The gridworld as a single `gymnasium.Env` over the tabular core."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.maze import MazeSpec
from envs.mdp import TabularMDP
from envs.render import render_ansi, render_rgb
from envs.world import make_world

OBS_MODES = ("index", "onehot", "image")


class GridWorldEnv(gym.Env):
    """A gridworld with walls, a goal, hazards and optional slip.

    ## Description
    The agent moves on a grid written as ASCII (see `envs.maps`), a procedural maze
    (`maze:HxW`, a new maze every episode), or an imported toy-text env (`FrozenLake-v1`).
    Dynamics come from the world's `TabularMDP`; `envs.BatchedGridWorld` steps the same tables.

    ## Action Space
    `Discrete(4)`: 0 up, 1 down, 2 left, 3 right (imported envs keep their own meaning, see
    `mdp.action_names`). A move into a wall or off the grid leaves the agent in place. With
    `slip=p` the move goes perpendicular with probability p (p/2 each side).

    ## Observation Space
    - `"index"`: `Discrete(S)`, the cell `row * width + col`.
    - `"onehot"`: `Box(0, 1, (S,), float32)`.
    - `"image"`: `Box(0, 1, (4, H, Wd), float32)`, channels wall, goal, hazard, agent; the one a
      policy needs to generalise across mazes.

    ## Starting State
    Uniform over the start cells (`S` on the map), or the toy-text env's start distribution.
    `reset(options={"state": s})` starts in cell `s` instead.

    ## Reward
    `goal_reward` (1) for entering a goal, `hazard_reward` (0, like a FrozenLake hole) for entering lava,
    `step_reward` (0) otherwise. Imported envs keep their own rewards.

    ## Episode End
    Terminated on entering a goal or lava (imported envs: on the transitions their table ends,
    e.g. Taxi's drop-off); `info["success"]` marks a successful end. Truncated by the `TimeLimit` wrapper that
    `gymnasium.make` adds for registered ids (`max_episode_steps`).

    ## Arguments
    `world` (spec or `TabularMDP`/`MazeSpec`), `obs_mode`, `render_mode` (`"ansi"`,
    `"rgb_array"`), `env_kwargs` (toy-text ids), and map options `slip`, `step_reward`,
    `goal_reward`, `hazard_reward`.

    ## Version History
    - v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8}

    def __init__(
        self,
        world: str | TabularMDP | MazeSpec = "empty",
        *,
        obs_mode: str = "index",
        render_mode: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        **map_options: float,
    ) -> None:
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode={obs_mode!r} is not one of {OBS_MODES}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not one of {self.metadata['render_modes']}")
        self.world = make_world(world, env_kwargs=env_kwargs, **map_options)
        self.maze = self.world if isinstance(self.world, MazeSpec) else None
        # A maze env needs a layout before the first reset to size its spaces.
        self.mdp = self.world if self.maze is None else self.maze.sample(np.random.default_rng(0))
        if obs_mode == "image" and self.mdp.layout is None:
            raise ValueError(f"obs_mode='image' needs a grid layout, which {self.mdp.name} lacks; use 'onehot'")
        self.obs_mode = obs_mode
        self.render_mode = render_mode
        self._load_tables()
        S = self.mdp.num_states
        self.action_space = spaces.Discrete(self.mdp.num_actions)
        if obs_mode == "index":
            self.observation_space = spaces.Discrete(S)
        elif obs_mode == "onehot":
            self.observation_space = spaces.Box(0.0, 1.0, (S,), np.float32)
        else:
            H, W = self.mdp.layout.height, self.mdp.layout.width
            self.observation_space = spaces.Box(0.0, 1.0, (4, H, W), np.float32)
        self.state = int(np.flatnonzero(self._start)[0])

    def _load_tables(self) -> None:
        m = self.mdp
        self._next_state = m.next_state.numpy()  # (S, A, O)
        prob = m.prob.double().numpy()  # (S, A, O)
        self._prob = prob / prob.sum(-1, keepdims=True)  # float32 tables sum to 1 only to ~1e-7
        self._reward = m.reward.numpy()  # (S, A, O)
        self._done = m.done.numpy()  # (S, A, O)
        self._success = m.success.numpy()  # (S, A, O)
        self._start = m.start.double().numpy() / float(m.start.double().sum())  # (S,)

    def _obs(self) -> Any:
        if self.obs_mode == "index":
            return self.state
        if self.obs_mode == "onehot":
            obs = np.zeros(self.mdp.num_states, dtype=np.float32)
            obs[self.state] = 1.0
            return obs
        layout = self.mdp.layout
        agent = np.zeros((1, layout.height, layout.width), dtype=np.float32)
        agent[0].flat[self.state] = 1.0
        return np.concatenate([layout.static_planes(), agent])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self.maze is not None:
            self.mdp = self.maze.sample(self.np_random)
            self._load_tables()
        state = (options or {}).get("state")
        if state is None:
            self.state = int(self.np_random.choice(self.mdp.num_states, p=self._start))
        else:
            if not (isinstance(state, (int, np.integer)) and 0 <= state < self.mdp.num_states):
                raise ValueError(f"options['state']={state!r} must be a cell index in [0, {self.mdp.num_states})")
            self.state = int(state)
        return self._obs(), {"state": self.state}

    def step(self, action: Any):
        if not self.action_space.contains(action):
            raise ValueError(
                f"invalid action {action!r}; expected an int in [0, {self.mdp.num_actions}) "
                f"({', '.join(self.mdp.action_names)})"
            )
        a, s = int(action), self.state
        probs = self._prob[s, a]
        o = 0 if len(probs) == 1 else int(self.np_random.choice(len(probs), p=probs))
        self.state = int(self._next_state[s, a, o])
        reward = float(self._reward[s, a, o])
        terminated = bool(self._done[s, a, o])
        info = {"state": self.state, "outcome": o, "success": bool(self._success[s, a, o])}
        return self._obs(), reward, terminated, False, info

    def render(self):
        if self.render_mode == "ansi":
            return render_ansi(self.mdp.layout, self.state, self.mdp.num_states)
        if self.render_mode == "rgb_array":
            return render_rgb(self.mdp.layout, self.state, self.mdp.num_states)
        return None
