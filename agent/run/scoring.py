"""Scoring a policy: exactly on the tabular core (its expected return, success probability and
length under the time limit, and the normalised score), and by greedy or sampled episodes on the
batched env's integer path."""

from __future__ import annotations

import gymnasium as gym
import torch

from agent.learning.gumbel import gumbel_max_sample
from agent.learning.policy import PolicyNet, logits_of_every_cell
from agent.run import interrupt
from envs import BatchedGridWorld
from envs.blackbox import BlackBoxEnv, observe_one
from envs.oracle import normalized_score, optimal_time_limited_return, policy_metrics, uniform_policy


@torch.no_grad()
def run_episodes(
    policy: PolicyNet,
    env: BatchedGridWorld,
    *,
    gamma: float,
    greedy: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Play exactly one episode in each of the env's B copies; per-episode tensors (B,)."""
    B = env.num_envs
    obs, _ = env.reset(options={"each_world": True})  # a maze pool's mazes once each, not drawn with replacement
    finished = torch.zeros(B, dtype=torch.bool, device=env.device)
    out = {k: torch.zeros(B, device=env.device) for k in ("return", "length", "success", "discounted")}
    # One-hot observations: the policy's logits of every cell once, (S, A), then read per step.
    table = logits_of_every_cell(policy, env.S) if env.obs_mode == "onehot" else None
    for t in range(env.max_episode_steps):
        interrupt.check()
        logits = policy(obs) if table is None else table.index_select(0, env.state)  # (B, A)
        action = logits.argmax(-1) if greedy else gumbel_max_sample(logits, generator=generator)
        obs, reward, _, _, info = env.step(action, observe=table is None)  # the table reads `state`
        out["discounted"] += (gamma**t) * reward * (~finished)
        if "episode" in info:  # some episode ended this step
            first = info["_episode"] & ~finished
            out["return"] = torch.where(first, info["episode"]["r"], out["return"])
            out["length"] = torch.where(first, info["episode"]["l"].float(), out["length"])
            if "success" in info:
                out["success"] = torch.where(first, info["success"].float(), out["success"])
            finished |= info["_episode"]
        if finished.all():
            break
    return out


@torch.no_grad()
def policy_table(policy: PolicyNet, env: BatchedGridWorld, *, greedy: bool = True, chunk: int = 65536) -> torch.Tensor:
    """The policy as a table (W, S, A) of action probabilities in each of the env's worlds: the
    network run on the observation of every cell (one-hot rows, or each maze's image with the
    agent in each cell). Greedy: one-hot rows at the argmax."""
    W, S = env.num_worlds, env.S
    if env.obs_mode == "onehot":
        logits = logits_of_every_cell(policy, S).expand(W, S, env.A)  # (W, S, A)
    elif env.obs_mode == "image":
        cells = torch.eye(S, device=env.device)  # (S, S)
        rows = []
        per = max(1, chunk // S)  # worlds per forward, to bound memory on large pools
        for w0 in range(0, W, per):
            w = torch.arange(w0, min(W, w0 + per), device=env.device).repeat_interleave(S)  # (n * S,)
            rows.append(policy(env.observe(cells.repeat(len(w) // S, 1), w)).reshape(-1, S, env.A))
        logits = torch.cat(rows)  # (W, S, A)
    else:
        raise ValueError("an exact evaluation needs a float observation mode (onehot or image)")
    if greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), env.A).double()
    return logits.double().softmax(-1)


def world_tables(env: BatchedGridWorld) -> dict[str, torch.Tensor]:
    """The env's tables with the world dim W leading (`envs.oracle`'s batched form), on the CPU."""
    return {
        "next_state": env.next_state.cpu(),
        "prob": env.prob.cpu(),
        "reward": env.reward_table.cpu(),
        "done": env.done.cpu(),
        "success": env.success.cpu(),
        "start": env.start.cpu(),
    }


def reference_returns(env: BatchedGridWorld, gamma: float) -> dict[str, torch.Tensor]:
    """Per world (W,): the uniformly random policy's and the optimal expected return, both over
    episodes cut at the env's time limit as the evaluated ones are (the normalised score's ends)."""
    tables, T = world_tables(env), env.max_episode_steps
    return {
        "uniform": policy_metrics(tables, uniform_policy(tables), gamma, T)["return"],
        "optimal": optimal_time_limited_return(tables, gamma, T),
    }


@torch.no_grad()
def exact_evaluation(
    policy: PolicyNet,
    env: BatchedGridWorld,
    *,
    gamma: float,
    greedy: bool = True,
    reference: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """The policy's exact expected discounted return, success probability and length under the
    time limit (no sampling noise), and its normalised score (R - R_uniform) / (R* - R_uniform),
    each the mean over the env's worlds."""
    tables = world_tables(env)
    reference = reference if reference is not None else reference_returns(env, gamma)
    m = policy_metrics(tables, policy_table(policy, env, greedy=greedy).cpu(), gamma, env.max_episode_steps)
    score = normalized_score(m["return"], reference["uniform"], reference["optimal"])
    return {
        "exact_return": float(m["return"].mean()),
        "exact_success_rate": float(m["success"].mean()),
        "exact_length": float(m["length"].mean()),
        "optimal_return": float(reference["optimal"].mean()),
        "uniform_return": float(reference["uniform"].mean()),
        "normalized_score": float(score.mean()),
    }


@torch.no_grad()
def evaluate(
    policy: PolicyNet,
    env: BatchedGridWorld | BlackBoxEnv,
    *,
    gamma: float,
    greedy: bool = True,
    generator: torch.Generator | None = None,
    reference: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """One episode per env copy (success_rate, mean_return, mean_length, episodes), next to the
    exact evaluation (`exact_evaluation`) on a gridworld, or with 95% intervals on a black-box env,
    which has no tables to be exact with (`sampled_intervals`)."""
    was_training = policy.training
    policy.eval()
    ep = run_episodes(policy, env, gamma=gamma, greedy=greedy, generator=generator)
    sampled = {
        "success_rate": float(ep["success"].mean()),
        "mean_return": float(ep["return"].mean()),
        "mean_length": float(ep["length"].mean()),
        "episodes": int(env.num_envs),
    }
    if isinstance(env, BlackBoxEnv):
        sampled |= sampled_intervals(ep)
        if env.spec.success_rule is None:  # nothing to count: no success column at all, not a 0
            sampled = {k: v for k, v in sampled.items() if not k.startswith("success")}
    else:
        sampled |= exact_evaluation(policy, env, gamma=gamma, greedy=greedy, reference=reference)
    policy.train(was_training)
    return sampled


def sampled_intervals(ep: dict[str, torch.Tensor]) -> dict[str, float]:
    """95% intervals of a sample of episodes: the mean return's (normal, mean +- 1.96 standard
    errors) and the success rate's (Wilson's score interval, which stays inside [0, 1] and is not
    empty at a rate of 0 or 1; Wilson 1927)."""
    n, z = ep["return"].numel(), 1.96
    r = ep["return"].double()
    half = z * float(r.std()) / n**0.5 if n > 1 else float("inf")
    p = float(ep["success"].double().mean())
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    spread = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return {
        "return_ci95_low": float(r.mean()) - half,
        "return_ci95_high": float(r.mean()) + half,
        "success_ci95_low": max(0.0, centre - spread),  # 0 or 1 exactly where rounding would step past
        "success_ci95_high": min(1.0, centre + spread),
    }


def kept_score(result: dict[str, float]) -> float:
    """What the kept policy maximises: the normalised score on a gridworld, the mean return on a
    black-box env (no optimum is known there to normalise by)."""
    return result["normalized_score"] if "normalized_score" in result else result["mean_return"]


def success_of(result: dict[str, float]) -> float:
    """The success rate an evaluation found: exact on a gridworld, sampled on a black-box env."""
    return result.get("exact_success_rate", result["success_rate"])


@torch.no_grad()
def record_episode(
    policy: PolicyNet, cfg, *, seed: int, world=None, greedy: bool = True, max_frames: int | None = None
) -> list:
    """RGB frames of one episode in the gymnasium env (same dynamics; a black-box env's own
    `rgb_array` rendering), for GIFs."""
    from agent.run.factory import trained_obs_mode
    from agent.run.resolve import build_world, is_black_box
    from envs import GridWorldEnv

    world = build_world(cfg) if world is None else world
    if is_black_box(world):
        env = gym.make(world.env_id, render_mode="rgb_array", **world.env_kwargs)
        as_input = lambda o: observe_one(world, env.observation_space, o)  # noqa: E731  (1, D)
        limit = max_frames or world.max_episode_steps
    else:
        env = GridWorldEnv(world, obs_mode=trained_obs_mode(cfg), render_mode="rgb_array")
        as_input = lambda o: o[None]  # noqa: E731
        limit = max_frames or env.mdp.max_episode_steps
    device = next(policy.parameters()).device
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    generator = torch.Generator(device=device).manual_seed(seed)
    for _ in range(limit):
        logits = policy(torch.as_tensor(as_input(obs), device=device))  # (1, A)
        action = logits.argmax(-1) if greedy else gumbel_max_sample(logits, generator=generator)
        obs, _, terminated, truncated, _ = env.step(int(action))
        frames.append(env.render())
        if terminated or truncated:
            break
    env.close()
    return frames
