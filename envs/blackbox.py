"""Gymnasium envs known only by stepping them: any registered env whose action space is
`Discrete(n)` and that has no transition table, Minigrid first.

B copies step in gymnasium's own vector env (`SyncVectorEnv`, resetting an ended copy in the same
step), and come back as torch tensors in the shapes the samples-class learners' rollout reads
(`agent.learning.rollout.collect`). Observations become one float vector per copy:
- a `Box` is flattened;
- a `Discrete(n)` observation is one-hot;
- Minigrid's own observation, the 7x7x3 egocentric image (object, colour, state codes, each
  divided by its largest value) and the agent's direction (one-hot), is 151 numbers. Its mission
  string is not seen. It is fixed in most of Minigrid's envs; where it changes between episodes
  (BabyAI's levels, Fetch, GoToDoor, PutNear, ...) the spec says so (`mission_varies`), and a run
  tells its user once.

An episode succeeds, in Minigrid, when it ends with a positive reward (reaching the goal, its
reward being 1 - 0.9 steps / max_steps); other envs define no success.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.toy_text import error_line

# Ids whose registration needs the minigrid package imported first.
MINIGRID_PREFIXES = ("MiniGrid-", "BabyAI-")
MINIGRID_INSTALL = "pip install -e '.[minigrid]'"
# Largest value of each channel of Minigrid's image (object index, colour index, door state).
_MINIGRID_CHANNEL_MAX = np.array([10.0, 5.0, 2.0], dtype=np.float32)


@dataclass(frozen=True)
class BlackBoxSpec:
    """A gymnasium env known only by stepping it: the world of a run on a black-box env."""

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    num_actions: int = 0
    obs_shape: tuple[int, ...] = ()
    max_episode_steps: int = 0
    minigrid: bool = False
    # Distinct missions of a Minigrid env's first episodes: more than one, and the policy (which
    # does not see them) may need to guess.
    missions: tuple[str, ...] = ()

    @property
    def success_rule(self) -> str | None:
        """How an episode counts as a success, or None when the env defines none."""
        return "an episode that ends with a positive reward (the goal reached)" if self.minigrid else None

    @property
    def mission_varies(self) -> bool:
        return len(self.missions) > 1

    def make(self) -> gym.Env:
        return gym.make(self.env_id, **self.env_kwargs)


def is_minigrid(env_id: str) -> bool:
    return env_id.startswith(MINIGRID_PREFIXES)


def register_minigrid(env_id: str) -> None:
    """Import minigrid so that its ids are registered; a missing install is one line."""
    try:
        importlib.import_module("minigrid")
    except ImportError:
        raise ValueError(
            f"--env {env_id} is a Minigrid env, and Minigrid is not installed: {MINIGRID_INSTALL}"
        ) from None


def open_black_box(env_id: str, env_kwargs: dict[str, Any] | None = None) -> BlackBoxSpec:
    """The spec of a registered gymnasium env with a `Discrete(n)` action space; anything else is
    refused in one line (ValueError)."""
    kwargs = dict(env_kwargs or {})
    if is_minigrid(env_id):
        register_minigrid(env_id)
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"--env {env_id}: no such gymnasium env ({e}); see gymnasium.pprint_registry()") from None
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as e:  # gymnasium's message names the package and its install
        raise ValueError(f"--env {env_id}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 (envs raise TypeError, ValueError, ... for bad arguments)
        detail = error_line(e)
        raise ValueError(f"--env {env_id}: cannot make it with --env-kwargs {kwargs} ({detail})") from None
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"--env {env_id}: its action space is {env.action_space}, and only Discrete(n) actions can be "
                "sampled by Gumbel-max; use an env with discrete actions"
            )
        minigrid = is_minigrid(env_id)
        try:
            shape = (observation_size(env.observation_space, minigrid),)
        except ValueError as e:
            raise ValueError(f"--env {env_id}: {e}") from None
        missions = minigrid_missions(env_id, env) if minigrid else ()
        # Minigrid truncates its episodes itself, at max_steps (BabyAI sets it on reset); others
        # through gymnasium's TimeLimit.
        limit = env.unwrapped.max_steps if minigrid else (env.spec.max_episode_steps if env.spec else None)
        if not limit:
            raise ValueError(
                f"--env {env_id} has no time limit, so an evaluation episode might never end; register it "
                "with max_episode_steps (gymnasium.register) or pick an env that has one"
            )
        n = int(env.action_space.n)
        return BlackBoxSpec(env_id, kwargs, n, shape, int(limit), minigrid, missions)
    finally:
        env.close()


# Resets that look for a changing mission: enough that an env choosing among two missions shows
# both with probability 1 - 2^-7.
MISSION_RESETS = 8
_ARTICLES = {"a", "an", "the"}


def minigrid_missions(env_id: str, env: gym.Env) -> tuple[str, ...]:
    """The distinct missions of a Minigrid env's first `MISSION_RESETS` episodes (seeds 0, 1, ...),
    in order; an env that fails to reset is refused in one line."""
    missions: dict[str, str] = {}  # without articles -> as first worded
    for seed in range(MISSION_RESETS):
        try:
            env.reset(seed=seed)
        except Exception as e:  # noqa: BLE001 (a broken env raises anything)
            detail = error_line(e, 200)
            raise ValueError(f"--env {env_id}: the env fails to reset ({detail})") from None
        # BabyAI words one goal as "the red ball" or "a red ball" at random: the same mission.
        mission = str(getattr(env.unwrapped, "mission", ""))
        missions.setdefault(" ".join(w for w in mission.split() if w not in _ARTICLES), mission)
    return tuple(missions.values())


def mission_note(spec: BlackBoxSpec) -> str | None:
    """A line for the user of an env whose unseen mission changes between episodes, else None."""
    if not spec.mission_varies:
        return None
    return (
        f"note: {spec.env_id} changes its mission between episodes ('{spec.missions[0]}', '{spec.missions[1]}', ...) "
        "and the policy does not see it (only the 7x7 view and the direction): where the mission decides "
        "what to do, and does not just name the one object there is, success is capped"
    )


def observation_size(space: gym.Space, minigrid: bool) -> int:
    """Numbers in the float observation of `space` (refused in one line when it has none)."""
    if minigrid:
        return int(np.prod(space["image"].shape)) + int(space["direction"].n)
    try:  # Box: its numbers; Discrete: one-hot; Tuple, Dict, MultiDiscrete, ...: gymnasium's flat form
        return int(gym.spaces.flatdim(space))
    except (ValueError, NotImplementedError, TypeError):
        raise ValueError(
            f"its observations, {space}, have no flat float form (gymnasium.spaces.flatdim); "
            "wrap it in an observation wrapper that gives a Box"
        ) from None


def _arrays(space: gym.Space) -> bool:
    """Whether a batch of `space`'s observations is one array (Box, Discrete), not a structure."""
    return isinstance(space, (gym.spaces.Box, gym.spaces.Discrete))


def to_float(space: gym.Space, minigrid: bool, obs: Any) -> np.ndarray:
    """A batch of the vector env's observations (or, of a structured space, a list of single
    ones) -> (B, D) float32."""
    if minigrid:
        image = obs["image"].astype(np.float32) / _MINIGRID_CHANNEL_MAX  # (B, 7, 7, 3)
        direction = np.eye(space["direction"].n, dtype=np.float32)[obs["direction"]]  # (B, 4)
        return np.concatenate([image.reshape(image.shape[0], -1), direction], axis=1)
    if isinstance(space, gym.spaces.Discrete):
        return np.eye(space.n, dtype=np.float32)[np.asarray(obs) - space.start]
    if isinstance(space, gym.spaces.Box):
        obs = np.asarray(obs, dtype=np.float32)
        return obs.reshape(obs.shape[0], -1)
    rows = obs if isinstance(obs, list) else _rows(space, obs)
    return np.stack([gym.spaces.flatten(space, row) for row in rows]).astype(np.float32)  # (B, D)


def _rows(space: gym.Space, batch: Any) -> list[Any]:
    """A vector env's batch of a structured space (a tuple or dict of arrays) -> its single observations."""
    if isinstance(space, gym.spaces.Tuple):
        return list(zip(*(_rows(s, b) for s, b in zip(space.spaces, batch, strict=True)), strict=True))
    if isinstance(space, gym.spaces.Dict):
        parts = {k: _rows(s, batch[k]) for k, s in space.spaces.items()}
        return [dict(zip(parts, row, strict=True)) for row in zip(*parts.values(), strict=True)]
    return list(batch)


def observe_one(spec: BlackBoxSpec, space: gym.Space, obs: Any) -> np.ndarray:
    """One observation of a single (not vector) env -> (1, D) float32."""
    if spec.minigrid:
        return to_float(space, True, {"image": obs["image"][None], "direction": np.asarray([obs["direction"]])})
    return to_float(space, False, np.asarray([obs]) if _arrays(space) else [obs])


def _stack(space: gym.Space, minigrid: bool, items: list[Any]) -> Any:
    """Single observations (e.g. of `final_obs`) -> one batch, as `to_float` takes it."""
    if minigrid:
        return {k: np.stack([np.asarray(x[k]) for x in items]) for k in ("image", "direction")}
    return np.stack([np.asarray(x) for x in items]) if _arrays(space) else list(items)


class EnvFailure(RuntimeError):
    """The black-box env itself raised: its code, not the run's state, went wrong. The message is
    one line naming the env and the error."""


OBS_BUCKETS = 2**20  # hash buckets of observations: a 4 MB table of visit counts


class BlackBoxEnv:
    """B copies of a black-box env as torch tensors.

    `step(actions (B,))` -> (obs (B, D), reward (B,), terminated (B,), truncated (B,), info). An
    ended copy is reset in the same step: `obs` is its new episode's first observation, and
    `info["final_obs"]` (B, D) is where each copy's step landed (the ended episode's last
    observation where one ended). info also holds `done` (B,), `success` (B,) where the env defines
    success (Minigrid), and, on a step where
    an episode ended, `episode` {"r", "l"} (B,) and `_episode` (B,) as gymnasium's
    RecordEpisodeStatistics names them. A black box has no cells: `state` (B,) and
    `info["final_state"]` (B,) are the buckets of the current and the landed observations (a hash
    into `S` buckets, which is what `--explore-bonus` counts), `world_id` is zeros, and the
    table-reading parts of a learner cannot be used on it (the trainer refuses them)."""

    obs_mode = "flat"
    num_worlds = 1
    S = OBS_BUCKETS

    def __init__(self, spec: BlackBoxSpec, num_envs: int, *, seed: int = 0, device: torch.device | str = "cpu"):
        if spec.minigrid:
            register_minigrid(spec.env_id)
        self.spec, self.num_envs, self.seed = spec, num_envs, seed
        self.device = torch.device(device)
        self.vec = gym.vector.SyncVectorEnv(
            [spec.make for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        self.space = self.vec.single_observation_space
        self.A, self.observation_shape, self.max_episode_steps = (
            spec.num_actions,
            spec.obs_shape,
            spec.max_episode_steps,
        )
        self.world_id = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.state = self.world_id
        self._hash = torch.randint(1, 2**31, self.observation_shape, generator=torch.Generator().manual_seed(0)).to(
            self.device
        )  # (D,)
        self._return = np.zeros(num_envs, dtype=np.float64)
        self._length = np.zeros(num_envs, dtype=np.int64)

    def _tensor(self, obs: Any) -> torch.Tensor:
        return torch.as_tensor(to_float(self.space, self.spec.minigrid, obs), device=self.device)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Copy i starts from seed + i (the env's `seed` when none is given); `options` are the
        tabular env's, and a black box has none."""
        try:
            obs, _ = self.vec.reset(seed=self.seed if seed is None else seed)
        except Exception as e:
            raise EnvFailure(f"--env {self.spec.env_id}: the env raised {type(e).__name__} on reset: {e}") from e
        self._return[:], self._length[:] = 0.0, 0
        first = self._tensor(obs)
        self.state = self.bucket(first)
        return first, {}

    def bucket(self, obs: torch.Tensor) -> torch.Tensor:
        """Each observation's bucket (B,) of (B, D): a hash of its values rounded to 1/4096, so the
        same observation always lands in the same one (counts of distinct observations, Tang et al.
        2017's #Exploration, with a fixed hash in place of their SimHash)."""
        rounded = torch.round(obs * 4096).long()  # (B, D)
        return torch.remainder((rounded * self._hash).sum(-1), self.S)  # int64 overflow wraps, as a hash may

    def step(self, action: torch.Tensor, observe: bool = True):
        """One step of every copy (`observe` is the tabular env's: a black box always observes)."""
        try:
            obs, reward, terminated, truncated, infos = self.vec.step(action.detach().cpu().numpy())
        except Exception as e:
            raise EnvFailure(f"--env {self.spec.env_id}: the env raised {type(e).__name__} in a step: {e}") from e
        done = terminated | truncated
        self._return += reward
        self._length += 1
        next_obs = self._tensor(obs)  # (B, D)
        landed = next_obs.clone()
        if done.any():  # where an episode ended, the step landed on its last observation
            ended = np.flatnonzero(done)
            landed[torch.as_tensor(ended, device=self.device)] = self._tensor(
                _stack(self.space, self.spec.minigrid, [infos["final_obs"][i] for i in ended])
            )
        t = lambda x, dtype: torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)  # noqa: E731
        self.state = self.bucket(next_obs)
        info = {
            "done": t(done, torch.bool),
            "final_obs": landed,
            "final_state": self.bucket(landed),
            "explored": torch.zeros(self.num_envs, dtype=torch.bool, device=self.device),
        }
        if self.spec.success_rule is not None:  # Minigrid's: the episode ended with a reward
            info["success"] = t(terminated & (reward > 0), torch.bool)
        if done.any():
            info["episode"] = {"r": t(self._return.copy(), torch.float32), "l": t(self._length.copy(), torch.long)}
            info["_episode"] = info["done"]
            self._return[done], self._length[done] = 0.0, 0
        return next_obs, t(reward, torch.float32), t(terminated, torch.bool), t(truncated, torch.bool), info

    def close(self) -> None:
        self.vec.close()
