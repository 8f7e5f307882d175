"""`BatchedGridWorld` as a stable-baselines3 `VecEnv` (needs the `[bench]` extra).

    from envs.sb3 import SB3VecEnv
    from stable_baselines3 import PPO
    PPO("MlpPolicy", SB3VecEnv(BatchedGridWorld("four_rooms", 64, obs_mode="index"))).learn(100_000)

SB3 wants numpy arrays and its own info conventions: a list of dicts, one per env, with
`terminal_observation` and `TimeLimit.truncated` where an episode ended, and the Monitor-style
`episode` {"r", "l", "t"} SB3's logger reads for `rollout/ep_rew_mean`. The batched env already
resets in the same step, as SB3 expects of a VecEnv.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvStepReturn

from envs.batched import BatchedGridWorld


class SB3VecEnv(VecEnv):
    def __init__(self, env: BatchedGridWorld) -> None:
        self.env = env
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self):  # noqa: D102 (SB3's signature: seeds come through seed(), applied here)
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.env.reset(seed=seed)
        self._reset_seeds()
        return obs.cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:  # noqa: D102
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:  # noqa: D102
        action = torch.as_tensor(np.asarray(self._actions), device=self.env.device).long().reshape(-1)
        obs, reward, terminated, truncated, info = self.env.step(action)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done = (terminated | truncated).cpu().numpy()
        if "episode" in info:
            final = info["final_obs"].cpu().numpy()
            r, length, t = (info["episode"][k].cpu().numpy() for k in ("r", "l", "t"))
            trunc = truncated.cpu().numpy()
            for i in np.flatnonzero(done):
                infos[i] = {
                    "terminal_observation": final[i],
                    "TimeLimit.truncated": bool(trunc[i]),
                    "episode": {"r": float(r[i]), "l": int(length[i]), "t": float(t[i])},
                }
        return obs.cpu().numpy(), reward.cpu().numpy().astype(np.float32), done, infos

    def close(self) -> None:  # noqa: D102
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:  # noqa: D102
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:  # noqa: D102
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *args, indices: Any = None, **kwargs) -> list[Any]:  # noqa: D102
        result = getattr(self.env, method_name)(*args, **kwargs)
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:  # noqa: D102
        return [False] * len(self._get_indices(indices))

    def get_images(self) -> Sequence[np.ndarray | None]:  # noqa: D102
        return [None] * self.num_envs
