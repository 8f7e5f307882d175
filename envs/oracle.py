"""Exact solutions on the tabular core: value iteration (the normalised-score denominator) and
differentiable policy evaluation (the exact policy gradient)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from envs.mdp import TabularMDP


@dataclass(frozen=True)
class ValueIterationResult:
    values: torch.Tensor  # (S,) optimal state values, 0 at terminal states
    q: torch.Tensor  # (S, A) optimal action values
    policy: torch.Tensor  # (S,) greedy action per state
    optimal_return: float  # expected optimal discounted return from the start distribution
    iterations: int


def _expected_backup(mdp: TabularMDP, values: torch.Tensor, gamma: float) -> torch.Tensor:
    """Q(s, a) = sum_o p(o | s, a) [r(s, a, o) + gamma V(s'_o)], V = 0 after termination."""
    v_next = values[mdp.next_state] * (~mdp.terminal[mdp.next_state])  # (S, A, O)
    return (mdp.prob * (mdp.reward + gamma * v_next)).sum(-1)  # (S, A)


def value_iteration(
    mdp: TabularMDP, gamma: float = 0.99, *, horizon: int | None = None, tol: float = 1e-10,
    max_iters: int = 100_000,
) -> ValueIterationResult:
    """Optimal values and greedy policy by value iteration (float64 for a tight fixed point).

    With `horizon=T` the values are the optimum over episodes cut after T steps (backward
    induction: T backups from V = 0), which is what an agent under a time limit of T can reach;
    `policy` is then the best first action. On a slippery lake the untruncated optimum counts
    successes after the time limit, which no policy playing the time-limited env can collect.
    """
    if horizon is not None:
        if horizon < 1:
            raise ValueError(f"horizon={horizon} must be >= 1 (or None for the untruncated optimum)")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma} must be in [0, 1]")
        max_iters = horizon
    elif not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma={gamma} must be in [0, 1) for value iteration to converge")
    m = mdp.to("cpu")
    m.prob, m.reward = m.prob.double(), m.reward.double()
    values = torch.zeros(m.num_states, dtype=torch.float64)
    for it in range(1, max_iters + 1):  # noqa: B007 (`it` is reported after the loop)
        q = _expected_backup(m, values, gamma)
        # amax, not max(-1): max(dim) also computes indices and costs ~10 ms a call on some
        # CPU builds (torch 2.13, 2 threads) whatever the size; it dominated the loop.
        new = torch.where(m.terminal, 0.0, q.amax(-1))
        delta = float((new - values).abs().max())
        values = new
        if delta < tol:
            break
    q = _expected_backup(m, values, gamma)
    start_return = float((m.start.double() * values).sum())
    return ValueIterationResult(values, q, q.argmax(-1), start_return, it)


def time_limited_return(mdp: TabularMDP, policy: torch.Tensor, gamma: float, horizon: int) -> torch.Tensor:
    """Expected discounted return of `policy` (S, A) from the start distribution over episodes cut
    after `horizon` steps (what a rollout under that time limit estimates): `horizon` policy
    backups from V = 0, differentiable in the policy. Scalar, in the policy's dtype."""
    alive = (~mdp.terminal).to(policy.dtype)  # (S,)
    v = torch.zeros(mdp.num_states, dtype=policy.dtype)  # (S,)
    for _ in range(horizon):
        v = (policy * _expected_backup(mdp, v, gamma)).sum(-1) * alive  # (S,)
    return (mdp.start.to(policy.dtype) * v).sum()


def policy_values(mdp: TabularMDP, policy: torch.Tensor, gamma: float) -> torch.Tensor:
    """Exact values v_pi (S,) of a stochastic policy (S, A), differentiable in the policy.

    Solves (I - gamma P_pi) v = r_pi with terminal rows absorbing at value 0.
    """
    S = mdp.num_states
    dtype = policy.dtype
    alive = (~mdp.terminal).to(dtype)  # (S,)
    # Transition matrix under pi, cut at termination: P_pi[s, s'] = sum_{a,o} pi p 1[s'_o = s'].
    weight = policy[:, :, None] * mdp.prob.to(dtype)  # (S, A, O)
    P = torch.zeros(S, S, dtype=dtype, device=policy.device)
    P = P.index_put((torch.arange(S, device=policy.device)[:, None, None].expand_as(mdp.next_state),
                     mdp.next_state), weight, accumulate=True)  # (S, S)
    P = P * alive[:, None] * alive[None, :]
    r = (weight * mdp.reward.to(dtype)).sum((1, 2)) * alive  # (S,)
    eye = torch.eye(S, dtype=dtype, device=policy.device)
    return torch.linalg.solve(eye - gamma * P, r)


def expected_return(mdp: TabularMDP, policy: torch.Tensor, gamma: float) -> torch.Tensor:
    """Expected discounted return of `policy` (S, A) from the start distribution (scalar)."""
    return (mdp.start.to(policy.dtype) * policy_values(mdp, policy, gamma)).sum()
