"""The critic's side of every learner: TD(lambda) and greedy Q(lambda) targets, reading the critic
as a table of cells, and fitting it to its targets."""

from __future__ import annotations

import torch

from agent import interrupt
from agent.ensemble import Ensemble
from agent.policy import ValueNet


def lambda_returns(
    rewards: torch.Tensor, next_values: torch.Tensor, continues: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """TD(lambda) targets G_t, (T, B).

    Args:
        rewards: r_t, (T, B).
        next_values: V of the true successor of step t (0 if it terminated, V(final obs) if it
            was truncated), (T, B).
        continues: 1 where the episode goes on after step t, 0 where it ended, (T, B).
    """
    T = rewards.shape[0]
    out = torch.empty_like(rewards)
    ahead = next_values[-1]  # the last step bootstraps fully
    for t in reversed(range(T)):
        # Mix the one-step bootstrap with the longer return, only while the episode goes on.
        blended = (1 - lam) * next_values[t] + lam * ahead
        ahead = rewards[t] + gamma * torch.where(continues[t] > 0, blended, next_values[t])
        out[t] = ahead
    return out


def greedy_lambda_returns(
    rewards: torch.Tensor,
    greedy_values: torch.Tensor,
    greedy_taken: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    final_values: torch.Tensor,
    last_greedy_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Watkins's Q(lambda) targets for V(s_t), (T, B), from a rollout and one-step greedy backups
    (Watkins 1989; Sutton & Barto 2018, sec. 12.10): the value of acting greedily from s_t.

    Where the action taken at t was greedy, the target follows what happened, r_t plus gamma
    times a mix of the greedy value of s_{t+1} (weight 1 - lambda) and the next target (lambda);
    where it was not, the trace is cut and the target is the greedy backup at s_t itself.

    Args:
        rewards: r_t, (T, B).
        greedy_values: max_a E[r + gamma V(s')] at s_t, (T, B).
        greedy_taken: whether a_t was a greedy action, (T, B) bool.
        terminated, truncated: how step t ended the episode, if it did, (T, B) bool.
        final_values: V of the successor of step t (used after a time limit: the state goes on).
        last_greedy_value: the greedy backup at the state after the last step, (B,).
    """
    T = rewards.shape[0]
    out = torch.empty_like(rewards)
    ahead_value = ahead_return = last_greedy_value
    for t in reversed(range(T)):
        follow = (1 - lam) * ahead_value + lam * ahead_return
        follow = torch.where(truncated[t], final_values[t], follow)
        g = rewards[t] + gamma * torch.where(terminated[t], 0.0, follow)
        out[t] = torch.where(greedy_taken[t], g, greedy_values[t])
        ahead_value, ahead_return = greedy_values[t], out[t]
    return out


def cell_values(critic: ValueNet, env, worlds: torch.Tensor | None) -> torch.Tensor | None:
    """The critic's value of every cell in each of `worlds` (k,): (k, S) for image observations
    (the value map of each world's layout), (1, S) for one-hot ones (the same in every world;
    (N, S), a table per member, for an ensemble of N, `--num-seeds`). None when the critic is not
    linear in the position (an image critic without the value map) and can only be read off
    whole observations."""
    if env.obs_mode == "onehot":  # the critic is a table (ValueNet): V = (w_s + b) * scale, read off directly
        if isinstance(critic, Ensemble):
            weight, bias, scale = (
                critic.stacked(n) for n in ("head.weight", "head.bias", "scale")
            )  # (N, 1, S), (N, 1), (N,)
            return (weight[:, 0] + bias) * scale[:, None]  # (N, S)
        return (critic.head.weight + critic.head.bias[:, None]) * critic.scale  # (1, S)
    if env.obs_mode == "image" and critic.map_form:
        return critic.value_map(env.static_planes[worlds])  # (k, S)
    return None


def fit_critic(
    critic: ValueNet,
    optimizer: torch.optim.Optimizer,
    env,
    targets: torch.Tensor,
    *,
    obs: torch.Tensor | None,
    cells: torch.Tensor,
    worlds: torch.Tensor,
    epochs: int,
    num_minibatches: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Regress V onto `targets` (N, n), n samples of each of N agents (1, or an ensemble's
    members), with minibatch MSE; returns the last epoch's mean loss of each, (N,).

    Samples are given both as observations `obs` (N, n, ...; None will do for a critic read as a
    table) and as the (world, cell) they were in (`worlds`, `cells`, (N, n)). Where the critic is
    a table of cells (`cell_values`), each minibatch reads it once per distinct world and takes
    its samples' cells off that: the same predictions as critic(obs), but one table (one-hot) or
    one value map per world (images) instead of one network pass per sample. Each
    member's minibatches are its own samples, and its loss is its own mean: the members' sum
    gives each exactly its own gradient.
    """
    N, n = targets.shape
    size = max(1, n // num_minibatches)
    as_table = cell_values(critic, env, worlds[0, :1]) is not None
    loss_sum = torch.zeros(N, device=targets.device)
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n, generator=generator, device=generator.device) for _ in range(N)])
        loss_sum, batches = torch.zeros(N, device=targets.device), 0
        for i in range(0, n, size):
            interrupt.check()
            idx = order[:, i : i + size]  # (N, m)
            if as_table and env.obs_mode == "onehot":
                pred = cell_values(critic, env, None).gather(1, cells.gather(1, idx))  # (N, m)
            elif as_table:  # images: one value map per distinct world (a single agent)
                distinct, which = torch.unique(worlds[0, idx[0]], return_inverse=True)  # (k,), (m,)
                pred = cell_values(critic, env, distinct)[which, cells[0, idx[0]]][None]  # (1, m)
            else:
                pred = critic(obs[0, idx[0]])[None]  # (1, m)
            loss = 0.5 * (pred - targets.gather(1, idx)).pow(2).mean(1)  # (N,)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            loss_sum, batches = loss_sum + loss.detach(), batches + 1
        loss_sum = loss_sum / batches
    return loss_sum
