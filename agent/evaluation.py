"""Scoring a policy: greedy or sampled episodes on the batched env's integer path."""

from __future__ import annotations

import torch

from agent.gumbel import gumbel_max_sample
from agent.policy import PolicyNet
from envs import BatchedGridWorld, value_iteration


@torch.no_grad()
def run_episodes(policy: PolicyNet, env: BatchedGridWorld, *, gamma: float, greedy: bool = True,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Play exactly one episode in each of the env's B copies; per-episode tensors (B,)."""
    B = env.num_envs
    obs = env.reset(each_world=True)  # a maze pool's mazes once each, not drawn with replacement
    finished = torch.zeros(B, dtype=torch.bool, device=env.device)
    out = {k: torch.zeros(B, device=env.device) for k in ("return", "length", "success", "discounted")}
    for t in range(env.max_episode_steps):
        logits = policy(obs)  # (B, A)
        action = logits.argmax(-1) if greedy else gumbel_max_sample(logits, generator=generator)
        obs, reward, _, _, info = env.step(action)
        out["discounted"] += (gamma**t) * reward * (~finished)
        first = info["done"] & ~finished
        out["return"] = torch.where(first, info["episode_return"], out["return"])
        out["length"] = torch.where(first, info["episode_length"].float(), out["length"])
        out["success"] = torch.where(first, info["success"].float(), out["success"])
        finished |= info["done"]
        if finished.all():
            break
    return out


def optimal_return(env: BatchedGridWorld, gamma: float) -> float:
    """Mean optimum over the env's worlds (the normalised-score denominator) for episodes cut at
    the env's time limit, as the evaluated episodes are: then an optimal policy scores 1."""
    # One VI per distinct world; mazes share a size but not a solution.
    worlds = range(env.num_worlds)
    T = env.max_episode_steps
    values = [value_iteration(env_world(env, w), gamma, horizon=T).optimal_return for w in worlds]
    return sum(values) / len(values)


def env_world(env: BatchedGridWorld, w: int):
    from envs.mdp import TabularMDP

    return TabularMDP(
        next_state=env.next_state[w].cpu(), prob=env.prob[w].cpu(), reward=env.reward_table[w].cpu(),
        terminal=env.terminal[w].cpu(), start=torch.exp(env.start_logits[w]).cpu(),
        goal=env.goal[w].cpu(), name=env.mdp.name,
    )


def evaluate(policy: PolicyNet, env: BatchedGridWorld, *, gamma: float, greedy: bool = True,
             generator: torch.Generator | None = None) -> dict[str, float]:
    """One episode per env copy -> success_rate, mean_return, mean_length, normalized_score
    (mean discounted return over the time-limited optimum, `optimal_return`), episodes."""
    was_training = policy.training
    policy.eval()
    ep = run_episodes(policy, env, gamma=gamma, greedy=greedy, generator=generator)
    policy.train(was_training)
    optimum = optimal_return(env, gamma)
    return {
        "success_rate": float(ep["success"].mean()),
        "mean_return": float(ep["return"].mean()),
        "mean_length": float(ep["length"].mean()),
        "normalized_score": float(ep["discounted"].mean()) / optimum if optimum > 0 else float("nan"),
        "episodes": int(env.num_envs),
    }


@torch.no_grad()
def record_episode(policy: PolicyNet, cfg, *, seed: int, world=None, greedy: bool = True,
                   max_frames: int | None = None) -> list:
    """RGB frames of one episode in the gymnasium env (same dynamics), for GIFs."""
    from agent.factory import build_world, obs_mode
    from envs import GridWorldEnv

    trained_on = build_world(cfg)
    env = GridWorldEnv(trained_on if world is None else world, obs_mode=obs_mode(cfg, trained_on),
                       render_mode="rgb_array")
    device = next(policy.parameters()).device
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    generator = torch.Generator(device=device).manual_seed(seed)
    limit = max_frames or env.mdp.max_episode_steps
    for _ in range(limit):
        logits = policy(torch.as_tensor(obs, device=device).unsqueeze(0))  # (1, A)
        action = logits.argmax(-1) if greedy else gumbel_max_sample(logits, generator=generator)
        obs, _, terminated, truncated, _ = env.step(int(action))
        frames.append(env.render())
        if terminated or truncated:
            break
    return frames
