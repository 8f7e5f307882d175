"""BatchedGridWorld speaks gymnasium's vector API: made by `gym.make_vec`, spaces and metadata as
gymnasium defines them, and a CleanRL-style PPO loop that uses nothing else trains on it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import envs
from envs import BatchedGridWorld


def test_make_vec_builds_the_batched_env():
    vec = gym.make_vec("GumbelGrid/FourRooms-v0", num_envs=64, vectorization_mode="vector_entry_point")
    assert isinstance(vec, BatchedGridWorld) and isinstance(vec, gym.vector.VectorEnv)
    single = gym.make("GumbelGrid/FourRooms-v0")
    assert vec.num_envs == 64
    assert vec.single_observation_space == single.observation_space == gym.spaces.Discrete(169)
    assert vec.single_action_space == single.action_space == gym.spaces.Discrete(4)
    assert vec.action_space == gym.spaces.MultiDiscrete([4] * 64)
    assert vec.max_episode_steps == single.spec.max_episode_steps
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    onehot = gym.make_vec("GumbelGrid/Maze-v0", num_envs=8, vectorization_mode="vector_entry_point", obs_mode="onehot")
    assert onehot.observation_space.shape == (8, 121) and onehot.single_observation_space.shape == (121,)
    obs, info = onehot.reset(seed=3)
    assert onehot.observation_space.contains(obs.numpy()) and "state" in info
    onehot.close()


def test_episode_info_follows_gymnasiums_conventions():
    # SAME_STEP autoreset: the step that ends an episode returns the next episode's first obs,
    # with the last one in final_obs and the statistics in episode, masked by _final_obs/_episode.
    env = gym.make_vec("GumbelGrid/Empty-v0", num_envs=2, vectorization_mode="vector_entry_point", max_episode_steps=3)
    obs, _ = env.reset(seed=0)
    for t in range(3):
        obs, reward, terminated, truncated, info = env.step(np.array([0, 2]))  # bump the walls
        assert ("episode" in info) == (t == 2)
    assert info["_episode"].tolist() == info["_final_obs"].tolist() == [True, True]
    assert info["episode"]["l"].tolist() == [3, 3] and info["episode"]["r"].tolist() == [0.0, 0.0]
    assert truncated.tolist() == [True, True]


def _cleanrl_style_ppo(envs_: gym.vector.VectorEnv, steps: int, seed: int) -> list[float]:
    """A minimal PPO loop in CleanRL's shape, written against gymnasium's vector API only: the
    spaces, reset(seed=), step(numpy actions), and the episode info with its mask."""
    torch.manual_seed(seed)
    obs_dim, n_actions = int(np.prod(envs_.single_observation_space.shape)), envs_.single_action_space.n
    actor = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, n_actions))
    critic = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 1))
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=3e-3)
    num_steps, gamma = 16, 0.99
    next_obs, _ = envs_.reset(seed=seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
    returns = []
    for _ in range(steps // (num_steps * envs_.num_envs)):
        obs_buf, act_buf, logp_buf, rew_buf, done_buf, val_buf = [], [], [], [], [], []
        for _ in range(num_steps):
            with torch.no_grad():
                dist = torch.distributions.Categorical(logits=actor(next_obs))
                action = dist.sample()
                value = critic(next_obs).squeeze(-1)
            obs_buf.append(next_obs)
            act_buf.append(action)
            logp_buf.append(dist.log_prob(action))
            val_buf.append(value)
            next_obs, reward, terminations, truncations, infos = envs_.step(action.cpu().numpy())
            next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
            rew_buf.append(torch.as_tensor(reward, dtype=torch.float32))
            done_buf.append(
                torch.as_tensor(np.logical_or(np.asarray(terminations), np.asarray(truncations)), dtype=torch.float32)
            )
            if "episode" in infos:
                returns += np.asarray(infos["episode"]["r"])[np.asarray(infos["_episode"])].tolist()
        with torch.no_grad():
            ret = critic(next_obs).squeeze(-1)
        targets = []
        for r, d in zip(reversed(rew_buf), reversed(done_buf), strict=True):
            ret = r + gamma * ret * (1 - d)
            targets.append(ret)
        targets = torch.stack(targets[::-1]).flatten()
        obs_b, act_b, logp_b = torch.cat(obs_buf), torch.cat(act_buf), torch.cat(logp_buf)
        adv = targets - torch.cat(val_buf)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        for _ in range(4):
            dist = torch.distributions.Categorical(logits=actor(obs_b))
            ratio = (dist.log_prob(act_b) - logp_b).exp()
            policy_loss = -torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean()
            value_loss = 0.5 * (critic(obs_b).squeeze(-1) - targets).pow(2).mean()
            optimizer.zero_grad()
            (policy_loss + value_loss - 0.01 * dist.entropy().mean()).backward()
            optimizer.step()
    return returns


@pytest.mark.learning
def test_a_cleanrl_style_ppo_loop_trains_on_it_unchanged():
    vec = gym.make_vec("GumbelGrid/Empty-v0", num_envs=64, vectorization_mode="vector_entry_point", obs_mode="onehot")
    returns = _cleanrl_style_ppo(vec, 120_000, seed=0)
    # The empty 9x9 room: random play finds the goal now and then; PPO learns to reach it always.
    assert len(returns) > 500
    early, late = np.mean(returns[:200]), np.mean(returns[-200:])
    assert late > 0.95 and late > early
    assert envs.REGISTERED_IDS


@pytest.mark.slow  # ~1 min of SB3 PPO; stable-baselines3 is the [bench] extra, not in CI's install
def test_stable_baselines3_ppo_trains_on_the_batched_env():
    sb3 = pytest.importorskip("stable_baselines3", reason="stable-baselines3 comes with the [bench] extra")
    from stable_baselines3.common.env_checker import check_env  # noqa: F401 (the package loads)

    from envs.sb3 import SB3VecEnv

    vec = SB3VecEnv(BatchedGridWorld("empty", 16, obs_mode="index", seed=0))
    obs = vec.reset()
    assert obs.shape == (16,) and obs.dtype == np.int64
    model = sb3.PPO("MlpPolicy", vec, n_steps=64, batch_size=256, ent_coef=0.01, seed=0, device="cpu", verbose=0)
    model.learn(30_000)
    # SB3 read our episode infos (its Monitor-style statistics) and learnt the room.
    assert len(model.ep_info_buffer) > 0
    assert np.mean([e["r"] for e in model.ep_info_buffer]) > 0.9
    actions, _ = model.predict(vec.reset(), deterministic=True)
    _, _, done, infos = vec.step(actions)
    assert done.shape == (16,) and len(infos) == 16
