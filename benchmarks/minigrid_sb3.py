"""stable-baselines3 on Minigrid beside `benchmarks.minigrid`'s own learners, with the same stop
rule, evaluation seeds and test: PPO with rl-baselines3-zoo's Minigrid settings (`sb3-ppo`), and
DQN (`sb3-dqn`, a reference point) with SB3's own defaults, as the zoo has no Minigrid entry for it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import quiet_sb3

# rl-baselines3-zoo's PPO settings for Minigrid (hyperparams/ppo.yml), as ../shared/REFERENCES.md records them.
ZOO_PPO = {
    "n_steps": 128,
    "batch_size": 64,
    "n_epochs": 10,
    "learning_rate": 2.5e-4,
    "ent_coef": 0.0,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
}
ZOO_ENVS = 8
# SB3's DQN defaults (one env, a 1M replay, 32 per batch, an update every 4 steps, the target
# copied every 10k, epsilon from 1 to 0.05 over the first 10% of the run), written out so that
# a row names them; `exploration_fraction` is of the run's frame budget.
SB3_DQN = {
    "learning_rate": 1e-4,
    "buffer_size": 1_000_000,
    "learning_starts": 100,
    "batch_size": 32,
    "gamma": 0.99,
    "train_freq": 4,
    "target_update_interval": 10_000,
    "exploration_fraction": 0.1,
    "exploration_final_eps": 0.05,
}

# SB3's evaluations follow train.py's rule (`next_eval_step`: after 1, 2, 4, ... updates, then
# every --eval-every frames), its "update" being the PPO's rollout, n_steps x n_envs frames; DQN's
# takes the same points. Evaluating only on the grid gave train.py's runs early stops that SB3's
# could not have.
SB3_UPDATE_FRAMES = ZOO_PPO["n_steps"] * ZOO_ENVS

TEST_KEYS = (
    "success_rate",
    "success_ci95_low",
    "success_ci95_high",
    "mean_return",
    "return_ci95_low",
    "return_ci95_high",
    "episodes",
)


def train_sb3(env_id: str, learner: str, seed: int, budget, run_dir: Path) -> dict[str, Any]:
    """SB3 PPO with the zoo's settings (`sb3-ppo`) or DQN with SB3's (`sb3-dqn`) under `budget` (a
    `benchmarks.minigrid.Budget`): every `eval_every` frames its deterministic policy plays
    `eval_episodes` episodes (and after 1, 2, 4, ... rollouts of `SB3_UPDATE_FRAMES` before
    that, as train.py's runs evaluate), the best is kept, and training stops at the target."""
    import gymnasium as gym
    from minigrid.wrappers import FlatObsWrapper
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from agent.run.resolve import EVAL_SEED_OFFSET
    from agent.run.trainer import next_eval_step

    algo, settings, n_envs = (DQN, SB3_DQN, 1) if learner == "sb3-dqn" else (PPO, ZOO_PPO, ZOO_ENVS)
    envs = make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=FlatObsWrapper)
    model = quiet_sb3(algo("MlpPolicy", envs, seed=seed, device="cpu", verbose=0, **settings))
    make = lambda: FlatObsWrapper(gym.make(env_id))  # noqa: E731
    kept = run_dir / "best.zip"
    run_dir.mkdir(parents=True, exist_ok=True)

    class Evaluate(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.best, self.reached, self.kept_step = -1.0, None, 0
            self.next = next_eval_step(0, budget.eval_every, SB3_UPDATE_FRAMES)
            self.eval_s = 0.0
            self.curve: list[list[float]] = []

        # At a rollout's start, after the update before it: a step callback at the same count would
        # see the policy one rollout (1,024 frames) behind train.py's, which evaluates after updating.
        def _on_rollout_start(self) -> None:
            if self.reached is None and self.num_timesteps >= self.next:
                self.evaluate()

        def _on_step(self) -> bool:
            return self.reached is None

        def _on_training_end(self) -> None:  # the budget's last update, where it passed an evaluation point
            if self.reached is None and self.num_timesteps >= self.next:
                self.evaluate()

        def evaluate(self) -> None:
            self.next = next_eval_step(self.num_timesteps, budget.eval_every, SB3_UPDATE_FRAMES)
            # The validation episodes train.py's evaluations play, apart from training's and the test's.
            start = time.time()
            result = greedy_episodes(make, self.model, budget.eval_episodes, seed + EVAL_SEED_OFFSET["validation"])
            self.eval_s += time.time() - start
            self.curve.append([self.num_timesteps, result["success_rate"], result["mean_return"]])
            if result["mean_return"] >= self.best:
                self.best, self.kept_step = result["mean_return"], self.num_timesteps
                self.model.save(kept)
            if result["success_rate"] >= budget.target:
                self.reached = self.num_timesteps

    callback = Evaluate()
    start = time.time()
    model.learn(total_timesteps=budget.frames, callback=callback)
    train_s = time.time() - start  # as benchmarks.minigrid's own runs: up to the target's evaluation
    if not kept.exists():  # no evaluation came round: the last policy is the kept one
        model.save(kept)
    test = greedy_episodes(make, algo.load(kept, device="cpu"), budget.test_episodes, seed + EVAL_SEED_OFFSET["test"])
    return {
        "frames": int(model.num_timesteps),
        "frames_to_target": callback.reached,
        "kept_step": callback.kept_step,
        "train_s": train_s,
        "eval_s": callback.eval_s,
        "curve": callback.curve,
        **{k: test[k] for k in TEST_KEYS},
    }


def greedy_episodes(make, model, episodes: int, seed: int) -> dict[str, float]:
    """One deterministic episode in each of `episodes` copies (seeds seed, seed + 1, ...), in
    gymnasium's vector env; the same summary and 95% intervals as agent.evaluate's."""
    import gymnasium as gym
    import numpy as np
    import torch

    from agent.run.scoring import sampled_intervals

    vec = gym.vector.SyncVectorEnv([make] * episodes, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, _ = vec.reset(seed=seed)
    returns, success = np.zeros(episodes), np.zeros(episodes)
    running, finished = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    while not finished.all():
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = vec.step(action)
        running += reward
        ended = (terminated | truncated) & ~finished
        returns[ended], success[ended] = running[ended], (terminated & (reward > 0))[ended]
        finished |= terminated | truncated
    vec.close()
    ep = {"return": torch.as_tensor(returns), "success": torch.as_tensor(success)}
    return {
        "success_rate": float(success.mean()),
        "mean_return": float(returns.mean()),
        "episodes": episodes,
        **sampled_intervals(ep),
    }
