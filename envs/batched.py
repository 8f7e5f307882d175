"""B copies of the gridworld stepped at once in torch, differentiable in the actions.

Two ways to step:
- integer actions `(B,)` int64: the fast path, plain table look-ups, no autograd.
- one-hot actions `(B, A)` float (e.g. from `agent.learning.straight_through.straight_through`): the
  differentiable path. The agent's position is a one-hot `(B, S)` tensor `pos`; the next
  position, the reward, the live part of the next position (`info["live_pos"]`: zero where the
  transition ended the episode) and the observation are functions of `pos` and the action that
  autograd can differentiate (bilinear in both, read off the tables), so a return summed over a
  rollout back-propagates through every action taken. Slip outcomes are drawn by
  Gumbel-Max from `prob` and carry no gradient. With `slip_gradient="sampled"` the backward
  differentiates the step at the outcome that was drawn; with `"expected"` it differentiates
  the expectation over outcomes (sum_o prob[s, a, o] * ...), the same forward with a
  lower-variance (Rao-Blackwellised) backward.

It is a `gymnasium.vector.VectorEnv` (`gym.make_vec("GumbelGrid/FourRooms-v0", num_envs=4096,
vectorization_mode="vector_entry_point")` builds one), with torch tensors for arrays. Auto-reset
happens in the same step (`metadata["autoreset_mode"]` is SAME_STEP): when an episode ends at step
t, the observation step t returns is already the next episode's first; gymnasium's info keys hold
the rest, `final_obs` (the finished episodes' last observations, rows where `_final_obs`) and
`episode` ({"r": return, "l": length, "t": seconds}, rows where `_episode`). Extensions for the
differentiable path and the learners: `done`, `success`, `final_pos`, `live_pos`, `final_state`,
`explored`, `outcome`. Positions after a reset are constants, so no gradient flows across an
episode boundary.

Exploring starts (`explore_starts=p`, for training only): each new episode starts, with
probability p, in a state drawn uniformly from those an episode can be in (`TabularMDP.reachable`)
instead of from the start distribution; `info["explored"]` marks the episodes that did.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from envs.diffstep import OneHotStep, StepTables, dense_step, is_one_hot, one_hot
from envs.grid_env import OBS_MODES
from envs.gumbel_max import gumbel_max_sample
from envs.maze import MazeSpec
from envs.mdp import TabularMDP, stack_tables
from envs.world import make_world

SLIP_GRADIENTS = ("sampled", "expected")


class BatchedGridWorld(gym.vector.VectorEnv):
    """`num_envs` gridworlds on one device.

    Args:
        world: a world spec (see `envs.make_world`), a `TabularMDP`, a list of same-sized MDPs
            (env b plays world b % len(list)), or a `MazeSpec`: then a pool of `maze_pool`
            mazes is generated from `maze_seed` and every reset draws a fresh one from the pool.
        num_envs: B.
        obs_mode: "index" (B,) int64, "onehot" (B, S) float, or "image" (B, 4, H, Wd) float.
        device: where tables and state live.
        seed: seeds the env's own generator (starts, slips, maze draws).
        max_episode_steps: time limit (truncation); defaults to the world's.
        slip_gradient: "sampled" or "expected": which slip outcome(s) the backward of the
            differentiable path uses (see the module docstring); no effect without slip.
        explore_starts: probability that a new episode starts in a uniformly drawn reachable
            state (see the module docstring); 0 for evaluation.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        world: str | TabularMDP | MazeSpec | list[TabularMDP],
        num_envs: int,
        *,
        obs_mode: str = "onehot",
        device: str | torch.device = "cpu",
        seed: int = 0,
        max_episode_steps: int | None = None,
        maze_pool: int | None = None,
        maze_seed: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        slip_gradient: str = "expected",
        explore_starts: float = 0.0,
        render_mode: str | None = None,
        **map_options: float,
    ) -> None:
        if render_mode is not None:
            raise ValueError(
                f"render_mode={render_mode!r}: the batched env does not render; render one copy "
                "with gym.make(id, render_mode='rgb_array')"
            )
        self.render_mode = None
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be at least 1")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode={obs_mode!r} is not one of {OBS_MODES}")
        if slip_gradient not in SLIP_GRADIENTS:
            raise ValueError(f"slip_gradient={slip_gradient!r} is not one of {SLIP_GRADIENTS}")
        if not 0.0 <= explore_starts <= 1.0:
            raise ValueError(f"explore_starts={explore_starts} must be a probability in [0, 1]")
        self.slip_gradient = slip_gradient
        self.explore_starts = explore_starts
        self.device = torch.device(device)
        self.num_envs = B = num_envs
        self.obs_mode = obs_mode
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.resample_worlds = False
        if isinstance(world, list):
            mdps = world
        else:
            w = make_world(world, env_kwargs=env_kwargs, **map_options)
            if isinstance(w, MazeSpec):
                pool = maze_pool or min(B, 1024)
                mdps = w.sample_many(pool, seed if maze_seed is None else maze_seed)
                self.resample_worlds = True
            else:
                mdps = [w]
        self.mdp = mdps[0]
        self.num_worlds = len(mdps)
        self.max_episode_steps = max_episode_steps or self.mdp.max_episode_steps
        t = {k: v.to(self.device) for k, v in stack_tables(mdps).items()}
        self.next_state = t["next_state"]  # (W, S, A, O)
        self.prob = t["prob"]  # (W, S, A, O)
        self.reward_table = t["reward"]  # (W, S, A, O)
        self.done = t["done"]  # (W, S, A, O)
        self.success = t["success"]  # (W, S, A, O)
        self.start = t["start"]  # (W, S)
        self.start_logits = torch.log(t["start"])  # (W, S); -inf where no start
        self.reachable = torch.stack([m.reachable() for m in mdps]).to(self.device)  # (W, S)
        # Exploring starts draw uniformly among each world's reachable cells: the cells listed
        # first, then one uniform number per env picks among the first `count` of them (B numbers a
        # step instead of B x S Gumbels, which were most of a step's time).
        self.reachable_count = self.reachable.sum(1)  # (W,)
        self.reachable_cells = torch.argsort((~self.reachable).to(torch.uint8), dim=1, stable=True)  # (W, S)
        # Most maps have one start cell; drawing (B, S) Gumbel noise per reset was 70% of an
        # integer step at B = 65536 (torch.profiler), so those skip the draw.
        single_start = bool(((t["start"] > 0).sum(-1) == 1).all())
        self.fixed_start = t["start"].argmax(-1) if single_start else None  # (W,)
        self.tables = StepTables(self.next_state, self.reward_table, self.done, self.prob)
        # Flat copies for the integer path: one index_select on a linear row index was ~4x faster
        # than 4-d advanced indexing, which torch.profiler put at 71% of an integer step.
        self._flat_next_state, self._flat_reward = self.next_state.reshape(-1), self.reward_table.reshape(-1)
        self._flat_done, self._flat_success = self.done.reshape(-1), self.success.reshape(-1)
        self._soft = False  # set once a soft (non one-hot) action has mixed positions
        self.S, self.A, self.O = self.mdp.num_states, self.mdp.num_actions, self.mdp.num_outcomes
        if obs_mode == "image":
            if any(m.layout is None for m in mdps):
                raise ValueError(f"obs_mode='image' needs a grid layout, which {self.mdp.name} lacks; use 'onehot'")
            planes = np.stack([m.layout.static_planes() for m in mdps])
            self.static_planes = torch.from_numpy(planes).to(self.device)  # (W, 3, H, Wd)
            self.grid_shape = (self.mdp.layout.height, self.mdp.layout.width)
        self.world_id = torch.arange(B, device=self.device) % self.num_worlds  # (B,)
        self.state = torch.zeros(B, dtype=torch.long, device=self.device)  # (B,)
        self._pos: torch.Tensor | None = torch.zeros(B, self.S, device=self.device)  # see `pos`
        self.elapsed = torch.zeros(B, dtype=torch.long, device=self.device)  # (B,)
        self.episode_return = torch.zeros(B, device=self.device)  # (B,)
        self.explored = torch.zeros(B, dtype=torch.bool, device=self.device)  # (B,) began at an exploring start
        self.started_at = torch.full((B,), time.perf_counter(), dtype=torch.float64, device=self.device)  # (B,) s
        self._arange = torch.arange(B, device=self.device)
        self.single_action_space = spaces.Discrete(self.A)
        self.action_space = batch_space(self.single_action_space, B)
        if obs_mode == "index":
            self.single_observation_space = spaces.Discrete(self.S)
        else:
            self.single_observation_space = spaces.Box(0.0, 1.0, self.observation_shape, np.float32)
        self.observation_space = batch_space(self.single_observation_space, B)

    @property
    def pos(self) -> torch.Tensor:
        """(B, S) one-hot position, may carry gradient. The integer path with index observations
        never needs it, so there it is only built (from `state`) when asked for: writing a
        (B, S) float tensor per step was most of that path's time at B = 65536."""
        if self._pos is None:
            self._pos = one_hot(self.state, self.S)
        return self._pos

    @pos.setter
    def pos(self, value: torch.Tensor) -> None:
        self._pos = value

    # ----------------------------------------------------------------- randomness
    def _gumbel_argmax(self, logits: torch.Tensor) -> torch.Tensor:
        """An exact categorical draw over the last dim, by the Gumbel-max trick (the env's own generator)."""
        return gumbel_max_sample(logits, generator=self.generator)

    def _uniform_reachable(self) -> torch.Tensor:
        """A cell drawn uniformly from the reachable ones of each env's world, (B,)."""
        u = torch.rand(self.num_envs, generator=self.generator, device=self.device)  # (B,)
        count = self.reachable_count[self.world_id]  # (B,)
        pick = torch.minimum((u * count).long(), count - 1)  # (B,) in [0, count)
        return self.reachable_cells[self.world_id, pick]

    # ----------------------------------------------------------------- reset
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict]:
        """Reset every env; returns the first observation and an info dict.

        Options: `state` forces the start cell(s) (an int or a (B,) tensor); `each_world` puts env b
        in world b % num_worlds instead of drawing the worlds, so an evaluation with B = num_worlds
        plays every maze of its pool once (drawn, some would come twice and others never)."""
        options = dict(options or {})
        state, each_world = options.pop("state", None), bool(options.pop("each_world", False))
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; valid: state, each_world")
        if seed is not None:
            self.generator.manual_seed(seed)
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        if each_world:
            self.world_id = self._arange % self.num_worlds
        self._reset_where(everyone, draw_worlds=not each_world)
        self._soft = False
        if state is not None:
            forced = torch.as_tensor(state, dtype=torch.long, device=self.device)
            if forced.dim() > 1 or forced.numel() not in (1, self.num_envs):
                raise ValueError(
                    f"start state has shape {tuple(forced.shape)}; pass an int or a ({self.num_envs},) tensor"
                )
            forced = forced.expand(self.num_envs)
            if forced.min() < 0 or forced.max() >= self.S:
                raise ValueError(f"start state {state} out of range [0, {self.S})")
            self.state = forced.clone()
            self.pos = one_hot(self.state, self.S)
        return self._obs(self.pos), {"state": self.state.clone()}

    def close(self, **kwargs: Any) -> None:
        """Nothing to release: the tables are tensors."""

    def _reset_where(self, mask: torch.Tensor, draw_worlds: bool = True) -> None:
        """Start new episodes in the envs where `mask` (B,) is set (no gradient flows in)."""
        if self.resample_worlds and draw_worlds:
            fresh = torch.randint(self.num_worlds, (self.num_envs,), generator=self.generator, device=self.device)
            self.world_id = torch.where(mask, fresh, self.world_id)
        if self.fixed_start is not None:
            start = self.fixed_start[self.world_id]  # (B,) one start cell: no noise to draw
        else:
            start = self._gumbel_argmax(self.start_logits[self.world_id])  # (B,)
        if self.explore_starts > 0:
            coin = torch.rand(self.num_envs, generator=self.generator, device=self.device)  # (B,)
            explore = mask & (coin < self.explore_starts)
            start = torch.where(explore, self._uniform_reachable(), start)
            self.explored = torch.where(mask, explore, self.explored)
        self.state = torch.where(mask, start, self.state)
        if self._pos is not None and (self._soft or self._pos.requires_grad):
            self._pos = torch.where(mask[:, None], one_hot(self.state, self.S), self._pos)
        elif self._pos is not None:  # a constant one-hot of the old states: the new states' is the same rows elsewhere
            self._pos = one_hot(self.state, self.S)
        self.elapsed = torch.where(mask, 0, self.elapsed)
        self.episode_return = torch.where(mask, 0.0, self.episode_return)
        self.started_at = torch.where(mask, time.perf_counter(), self.started_at)

    def detach(self) -> None:
        """Cut the autograd graph at the current position (truncated back-propagation)."""
        if self._pos is not None:
            self._pos = self._pos.detach()

    # ----------------------------------------------------------------- step
    def step(
        self, action: torch.Tensor, observe: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Step all envs. `action`: (B,) int64 (fast path) or (B, A) one-hot float (differentiable).

        Returns obs, reward (B,), terminated (B,) bool, truncated (B,) bool, info.
        `info["final_pos"]` (the (B, S) position before any reset) is there except on the integer
        path with index observations, which never builds positions; `final_state` always is.
        `observe=False`, for a caller that reads `state`: obs and `info["final_obs"]` are None,
        and the integer path builds no positions (`pos` is then built when asked for).
        On the differentiable path `info["live_pos"]` is the next position where the episode goes
        on (zero rows after an ending transition) and `info["terminated_soft"]` the mass that
        ended (the sum of next_pos - live_pos), both with gradient.
        """
        S = self.S
        action = self._check_action(action)
        diff = action.is_floating_point()
        a_idx = action.argmax(-1) if diff else action  # (B,)
        w, s = self.world_id, self.state
        if self.O == 1:
            o = torch.zeros_like(s)
        else:
            o = self._gumbel_argmax(torch.log(self.prob[w, s, a_idx]))  # (B,) from (B, O)
        row = self._table_row(w, s, a_idx, o)  # (B,)
        terminated = self._flat_done.index_select(0, row)  # (B,)
        info: dict[str, Any] = {}
        if diff:
            if self._soft or not is_one_hot(action):
                # Soft actions (e.g. the "gs" relaxation) mix positions: the dense reference.
                next_pos, reward, live = dense_step(self.pos, action, self.tables, w, o)
                next_state = next_pos.detach().argmax(-1)  # (B,) the most likely cell
                self._soft = True
            else:
                next_pos, reward, live, next_state = OneHotStep.apply(
                    self.pos, action, self.tables, w, s, a_idx, o, self.slip_gradient == "expected", row
                )
            info["live_pos"] = live  # (B, S)
            info["terminated_soft"] = (next_pos - live).sum(-1)  # (B,) sum of pos act done: bilinear
        else:
            next_state = self._flat_next_state.index_select(0, row)  # (B,)
            reward = self._flat_reward.index_select(0, row)  # (B,)
            next_pos = None
        self.elapsed = self.elapsed + 1
        truncated = (self.elapsed >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        self.episode_return = self.episode_return + reward.detach()
        self.state = next_state
        if next_pos is None and self.obs_mode != "index" and observe:
            next_pos = one_hot(next_state, S)
        self._pos = next_pos  # None: built from `state` when asked for
        info["final_obs"] = self._obs(next_pos) if observe else None
        if next_pos is not None:
            info["final_pos"] = next_pos  # (B, S) before any reset; differentiable on that path
        info["final_state"] = next_state  # (B,) before any reset
        info["_final_obs"] = info["done"] = done
        info["success"] = self._flat_success.index_select(0, row)
        info["explored"] = self.explored.clone()
        info["outcome"] = o
        if done.any():
            info["episode"] = {
                "r": self.episode_return.clone(),
                "l": self.elapsed.clone(),
                "t": time.perf_counter() - self.started_at,
            }
            info["_episode"] = done
            self._reset_where(done)
            obs = self._obs(self._pos) if observe else None
        else:
            obs = info["final_obs"]
        return obs, reward, terminated, truncated, info

    def every_action(
        self, w: torch.Tensor, s: torch.Tensor, o: torch.Tensor, expected: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The step from cells s (B,) of worlds w under every action (`StepTables.every_action`)."""
        return self.tables.every_action(w, s, o, expected)

    def step_rows(
        self, w: torch.Tensor, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step from cells s (n,) of worlds w under every action and outcome: (next cell,
        reward, continues, probability), (n, A, O) each."""
        return (
            self.next_state[w, s],
            self.reward_table[w, s],
            (~self.done[w, s]).to(self.reward_table.dtype),
            self.prob[w, s],
        )

    def _table_row(self, w: torch.Tensor, s: torch.Tensor, a: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Row of (w, s, a, o) in the flattened (W, S, A, O) tables."""
        if self.num_worlds == 1 and self.O == 1:
            return s * self.A + a  # w = o = 0: the same row, in two ops
        return self.tables.flat_rows(w, s, a, o)

    def _check_action(self, action: Any) -> torch.Tensor:
        if not isinstance(action, torch.Tensor):
            action = torch.as_tensor(np.asarray(action), device=self.device)
        B, A = self.num_envs, self.A
        if action.is_floating_point():
            if tuple(action.shape) != (B, A):
                raise ValueError(f"float actions must be one-hot of shape ({B}, {A}), got {tuple(action.shape)}")
            return action
        if action.dtype == torch.bool or tuple(action.shape) != (B,):
            raise ValueError(
                f"integer actions must have shape ({B},) and an int dtype, got {tuple(action.shape)} {action.dtype}"
            )
        bad = (action < 0) | (action >= A)
        if bad.any():
            raise ValueError(f"invalid action {int(action[bad][0])}; actions must be in [0, {A})")
        return action.to(device=self.device, dtype=torch.long)

    # ----------------------------------------------------------------- observations
    def _obs(self, pos: torch.Tensor | None) -> torch.Tensor:
        if self.obs_mode == "index":
            return self.state.clone()
        return self.observe(pos)

    def observe(self, pos: torch.Tensor, world_id: torch.Tensor | None = None) -> torch.Tensor:
        """The float observation of positions `pos` (B, S) (one-hot, soft or partly zero, e.g.
        `info["live_pos"]`), in the envs' current worlds or in `world_id` (B,); differentiable in
        `pos`."""
        if self.obs_mode == "onehot":
            return pos
        if self.obs_mode == "index":
            raise ValueError("observe needs a float observation mode (onehot or image)")
        H, W = self.grid_shape
        w = self.world_id if world_id is None else world_id
        agent = pos.reshape(pos.shape[0], 1, H, W)  # (B, 1, H, Wd)
        return torch.cat([self.static_planes[w], agent], dim=1)  # (B, 4, H, Wd)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        if self.obs_mode == "index":
            return ()
        if self.obs_mode == "onehot":
            return (self.S,)
        return (4, *self.grid_shape)
