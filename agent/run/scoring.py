"""Scoring a policy: exactly on the tabular core (its expected return, success probability and
length under the time limit, and the normalised score), and by greedy or sampled episodes on the
batched env's integer path."""

from __future__ import annotations

import torch

from agent.learning.gumbel import gumbel_max_sample
from agent.learning.policy import PolicyNet, logits_of_every_cell
from agent.run import interrupt
from envs import BatchedGridWorld
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
    env: BatchedGridWorld,
    *,
    gamma: float,
    greedy: bool = True,
    generator: torch.Generator | None = None,
    reference: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """The exact evaluation (`exact_evaluation`) next to one sampled episode per env copy
    (success_rate, mean_return, mean_length, episodes)."""
    was_training = policy.training
    policy.eval()
    ep = run_episodes(policy, env, gamma=gamma, greedy=greedy, generator=generator)
    exact = exact_evaluation(policy, env, gamma=gamma, greedy=greedy, reference=reference)
    policy.train(was_training)
    return {
        "success_rate": float(ep["success"].mean()),
        "mean_return": float(ep["return"].mean()),
        "mean_length": float(ep["length"].mean()),
        "episodes": int(env.num_envs),
        **exact,
    }


@torch.no_grad()
def record_episode(
    policy: PolicyNet, cfg, *, seed: int, world=None, greedy: bool = True, max_frames: int | None = None
) -> list:
    """RGB frames of one episode in the gymnasium env (same dynamics), for GIFs."""
    from agent.run.factory import trained_obs_mode
    from agent.run.resolve import build_world
    from envs import GridWorldEnv

    env = GridWorldEnv(
        build_world(cfg) if world is None else world, obs_mode=trained_obs_mode(cfg), render_mode="rgb_array"
    )
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
