"""The critic's side of every learner: TD(lambda) targets, greedy backups through the env's tables,
reading the critic as a table of cells, and fitting it to its targets."""

from __future__ import annotations

import torch

from agent.learning.ensemble import Ensemble
from agent.learning.optim import Adam
from agent.learning.policy import ValueNet
from agent.run import interrupt


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


def greedy_backups(env, values: torch.Tensor, worlds: torch.Tensor, gamma: float, steps: int) -> torch.Tensor:
    """`steps` greedy backups V <- max_a E_o[r + gamma (1 - done) V(s'_o)] through the env's tables
    (value iteration), at every cell of each of `worlds` (k,), starting from `values` (R, k, S):
    R tables of the k worlds' cells. Returns (R, k, S), without gradient.

    Each backup moves exact information about rewards one step further out, so `steps` backups of
    a critic that knows nothing yet already give the exact value of every cell within `steps`
    moves of a reward; the critic's own values close the rest."""
    R, k, S = values.shape
    ns, done, prob, reward = (t.index_select(0, worlds) for t in (env.next_state, env.done, env.prob, env.reward_table))
    A, O = ns.shape[2:]
    index = ns.reshape(1, k, S * A * O).expand(R, -1, -1)  # (R, k, S*A*O)
    earn, keep = (prob * reward).sum(-1), gamma * prob * ~done  # (k, S, A), (k, S, A, O)
    v = values.detach()
    for _ in range(steps):
        v_next = v.gather(2, index).reshape(R, k, S, A, O)
        v = (earn + (keep * v_next).sum(-1)).max(-1).values  # (R, k, S)
    return v


def visited_backups(
    table: torch.Tensor,
    rows: torch.Tensor,
    worlds: torch.Tensor,
    cells: torch.Tensor,
    step_rows,
    gamma: float,
    steps: int,
) -> torch.Tensor:
    """`steps` greedy backups V <- max_a E_o[r + gamma (1 - done) V(s'_o)] at the given cells only:
    the keys (rows, worlds, cells), (n,) each, of a value table `table` (R, W, S) (R value tables,
    W worlds). Every other entry keeps its value, so a backed-up value is read where a successor is
    a backed-up cell, and the table's own value elsewhere. `step_rows(worlds, cells)` gives the step
    from those cells, (next cell, reward, continues, probability), (n, A, O) each: the only rows
    read. Returns the table (R, W, S), without gradient.

    Where value iteration (`greedy_backups`) sweeps every cell through the env's tables, this backs
    up the cells a rollout was in, from what the simulator tells at them: a simulator-class critic."""
    R, W, S = table.shape
    keys = torch.unique((rows * W + worlds) * S + cells)  # (k,) each cell once
    base, cells = keys - keys % S, keys % S  # (k,) where the cell's table row begins, the cell
    ns, reward, cont, prob = step_rows((keys // S) % W, cells)  # (k, A, O) each
    successors = base[:, None, None] + ns  # (k, A, O) flat index of each successor's value
    earn, keep = (prob * reward).sum(-1), gamma * prob * cont  # (k, A), (k, A, O)
    v = table.detach().reshape(-1).clone()
    for _ in range(steps):
        v[keys] = (earn + (keep * v[successors]).sum(-1)).max(-1).values  # (k,)
    return v.view(R, W, S)


def rescale_critic(critic: ValueNet, rewards: torch.Tensor) -> None:
    """Raise the critic's unit (`ValueNet.scale`: values are given in units of it, so that
    optimiser steps fit any reward scale) to the largest reward magnitude seen so far, `rewards`
    (M, n): n rewards of each of M agents (1, or an ensemble's members). The output layer is divided
    by the same factor, so every value stays what it was. A unit never falls, and starts at 1."""
    seen = rewards.detach().abs().amax(1).to(torch.float32)  # (M,)
    if isinstance(critic, Ensemble):
        scale, weight, bias = (critic.stacked(n) for n in ("scale", "head.weight", "head.bias"))  # (M,), (M, ...)
    else:
        scale, weight, bias = critic.scale.view(1), critic.head.weight[None], critic.head.bias[None]
    new = torch.maximum(scale, seen.to(scale.device))  # (M,)
    if bool((new > scale).any()):
        factor = scale / new  # (M,) <= 1
        with torch.no_grad():
            weight.mul_(factor.view(-1, *[1] * (weight.dim() - 1)))
            bias.mul_(factor.view(-1, *[1] * (bias.dim() - 1)))
            scale.copy_(new)


def cell_values(critic: ValueNet, env, worlds: torch.Tensor | None) -> torch.Tensor | None:
    """The critic's value of every cell in each of `worlds` (k,): (k, S) for image observations
    (the value map of each world's layout), (1, S) for one-hot ones (the same in every world;
    (M, S), a table per member, for an ensemble of M, `--num-seeds`). None when the critic is not
    linear in the position (an image critic without the value map) and can only be read off
    whole observations."""
    if env.obs_mode == "onehot":  # the critic is a table (ValueNet): V = (w_s + b) * scale, read off directly
        if isinstance(critic, Ensemble):
            weight, bias, scale = (
                critic.stacked(n) for n in ("head.weight", "head.bias", "scale")
            )  # (M, 1, S), (M, 1), (M,)
            return (weight[:, 0] + bias) * scale[:, None]  # (M, S)
        return (critic.head.weight + critic.head.bias[:, None]) * critic.scale  # (1, S)
    if env.obs_mode == "image" and critic.map_form:
        return critic.value_map(env.static_planes[worlds])  # (k, S)
    return None


def fit_critic(
    critic: ValueNet,
    optimizer: Adam,
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
    """Regress V onto `targets` (M, n), n samples of each of M agents (1, or an ensemble's
    members), with minibatch MSE; returns the last epoch's mean loss of each, (M,).

    Samples are given both as observations `obs` (M, n, ...; None will do for a critic read as a
    table) and as the (world, cell) they were in (`worlds`, `cells`, (M, n)). Where the critic is
    a table of cells (`cell_values`), each minibatch reads it once per distinct world and takes
    its samples' cells off that: the same predictions as critic(obs), but one table (one-hot) or
    one value map per world (images) instead of one network pass per sample. Each
    member's minibatches are its own samples, and its loss is its own mean: the members' sum
    gives each exactly its own gradient.
    """
    M, n = targets.shape
    size = max(1, n // num_minibatches)
    as_table = cell_values(critic, env, worlds[0, :1]) is not None
    loss_sum = torch.zeros(M, device=targets.device)
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n, generator=generator, device=generator.device) for _ in range(M)])
        loss_sum, batches = torch.zeros(M, device=targets.device), 0
        for i in range(0, n, size):
            interrupt.check()
            idx = order[:, i : i + size]  # (M, m)
            if as_table and env.obs_mode == "onehot":
                pred = cell_values(critic, env, None).gather(1, cells.gather(1, idx))  # (M, m)
            elif as_table:  # images: one value map per distinct world (a single agent)
                distinct, which = torch.unique(worlds[0, idx[0]], return_inverse=True)  # (k,), (m,)
                pred = cell_values(critic, env, distinct)[which, cells[0, idx[0]]][None]  # (1, m)
            else:
                pred = critic(obs[0, idx[0]])[None]  # (1, m)
            loss = 0.5 * (pred - targets.gather(1, idx)).pow(2).mean(1)  # (M,)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            loss_sum, batches = loss_sum + loss.detach(), batches + 1
        loss_sum = loss_sum / batches
    return loss_sum
