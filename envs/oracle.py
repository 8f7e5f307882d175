"""Exact solutions on the tabular core: value iteration, exact evaluation of a policy under the
time limit (return, success probability, length: no sampling noise), the normalised score, and
differentiable policy evaluation (the exact policy gradient).

A policy here is a table `(S, A)` of action probabilities (a greedy policy is one-hot rows).
Functions that take `tables` accept a `TabularMDP` or `envs.mdp.stack_tables`' dict, whose tensors
carry a leading world dim W (a pool of mazes); results then have that leading dim too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from envs.mdp import TabularMDP


@dataclass(frozen=True)
class ValueIterationResult:
    values: torch.Tensor  # (S,) optimal state values
    q: torch.Tensor  # (S, A) optimal action values
    policy: torch.Tensor  # (S,) greedy action per state
    optimal_return: float  # expected optimal discounted return from the start distribution
    iterations: int


def _table(tables: TabularMDP | dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return tables[name] if isinstance(tables, dict) else getattr(tables, name)


def _backup(tables, values: torch.Tensor, gamma: float | torch.Tensor, payoff: torch.Tensor) -> torch.Tensor:
    """Q(s, a) = sum_o p(o | s, a) [payoff(s, a, o) + gamma (1 - done) V(s'_o)], shape (..., S, A).

    `values` (..., S); the tables (..., S, A, O) share its trailing leading dims (none, or W
    worlds), and any dims before those are batches of values (`gamma` and `payoff` broadcast)."""
    ns, prob, done = _table(tables, "next_state"), _table(tables, "prob"), _table(tables, "done")
    S = values.shape[-1]
    lead = values.shape[:-1]
    offset = (torch.arange(values[..., 0].numel(), device=values.device) * S).reshape(*lead, 1, 1, 1)
    v_next = values.reshape(-1)[ns + offset] * (~done)  # (..., S, A, O)
    return (prob.to(values.dtype) * (payoff + gamma * v_next)).sum(-1)


def value_iteration(
    mdp: TabularMDP, gamma: float = 0.99, *, horizon: int | None = None, tol: float = 1e-10, max_iters: int = 100_000
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
    reward = m.reward.double()
    values = torch.zeros(m.num_states, dtype=torch.float64)
    for it in range(1, max_iters + 1):  # noqa: B007 (`it` is reported after the loop)
        # amax, not max(-1): max(dim) also computes indices and costs ~10 ms a call on some
        # CPU builds (torch 2.13, 2 threads) whatever the size; it dominated the loop.
        new = _backup(m, values, gamma, reward).amax(-1)
        delta = float((new - values).abs().max())
        values = new
        if delta < tol:
            break
    q = _backup(m, values, gamma, reward)
    start_return = float((m.start.double() * values).sum())
    return ValueIterationResult(values, q, q.argmax(-1), start_return, it)


def optimal_time_limited_return(tables, gamma: float, horizon: int) -> torch.Tensor:
    """The optimum (float64, shape of the leading world dims) over episodes cut after `horizon`
    steps, from the start distribution: backward induction, batched over worlds. It stops early
    once a backup changes no value by more than it could still add up to (then every later one
    changes them less), so a time limit far beyond the longest path costs nothing."""
    reward = _table(tables, "reward").double()
    v = torch.zeros(reward.shape[:-2], dtype=torch.float64, device=reward.device)  # (..., S)
    for _ in range(horizon):
        new = _backup(tables, v, gamma, reward).amax(-1)
        change = float((new - v).abs().max())
        v = new
        # Backups are a gamma-contraction: later ones move a value by at most change * gamma / (1 - gamma).
        if change == 0.0 or (gamma < 1.0 and change * gamma / (1.0 - gamma) <= 1e-13 * max(1.0, float(v.abs().max()))):
            break
    return (_table(tables, "start").double() * v).sum(-1)


def policy_metrics(
    tables, policy: torch.Tensor, gamma: float, horizon: int, *, max_period: int = 4
) -> dict[str, torch.Tensor]:
    """Exact metrics of `policy` (..., S, A) from the start distribution over episodes cut after
    `horizon` steps (the env's time limit): the expected discounted return, the probability of
    success, and the expected length. Float64; each value has the shape of the leading world dims.

    The distribution of the not-yet-ended episodes is carried forward step by step, so the cost
    ends with the episodes: when every one has ended, or when the distribution repeats itself
    exactly with a period of at most `max_period` steps (a policy walking into a wall, or between
    two cells, forever), the rest of the time limit is summed in closed form."""
    ns, prob, done = _table(tables, "next_state"), _table(tables, "prob").double(), _table(tables, "done")
    lead, (S, A, O) = ns.shape[:-3], ns.shape[-3:]
    L = max(1, ns[..., 0, 0, 0].numel())
    # Per state, what one step of the policy pays: reward, success, and the chance of going on.
    weight = policy.double().expand(*lead, S, A)[..., None] * prob  # (..., S, A, O)
    pay_r = (weight * _table(tables, "reward").double()).sum((-1, -2)).reshape(L, S)  # (L, S)
    pay_s = (weight * _table(tables, "success").double()).sum((-1, -2)).reshape(L, S)  # (L, S)
    # One step moves the alive mass by a sparse (L*S, L*S) matrix: entry (s', s) is the chance of
    # going on from s into s' (each world's cells offset by S, so the worlds never mix).
    offset = torch.arange(L, device=ns.device).repeat_interleave(S * A * O) * S  # (L*S*A*O,)
    source = torch.arange(L * S, device=ns.device).repeat_interleave(A * O)  # (L*S*A*O,)
    with warnings.catch_warnings():  # torch calls its CSR support beta; the product is all we use
        warnings.simplefilter("ignore", UserWarning)
        step = torch.sparse_coo_tensor(
            torch.stack([ns.reshape(-1) + offset, source]),
            (weight * (~done)).reshape(-1),
            (L * S, L * S),
            check_invariants=True,
        ).to_sparse_csr()  # duplicates (moves into the same cell) summed
    d = _table(tables, "start").double().expand(*lead, S).reshape(L, S)  # (L, S) alive mass
    ret, succ, length = (torch.zeros(L, dtype=torch.float64, device=d.device) for _ in range(3))
    recent: list[tuple[torch.Tensor, torch.Tensor]] = []  # the last states and each one's step reward
    for t in range(horizon):
        step_r = (d * pay_r).sum(-1)  # (L,)
        ret += gamma**t * step_r
        succ += (d * pay_s).sum(-1)
        length += d.sum(-1)
        d = (step @ d.reshape(-1, 1)).reshape(L, S)
        left = horizon - t - 1
        if left == 0 or not bool((d > 0).any()):
            break
        recent = (recent + [(d, step_r)])[-(max_period + 1) :]
        period = next((p for p in range(1, len(recent)) if torch.equal(recent[-1 - p][0], d)), None)
        if period is not None:
            # The steps t+1 .. horizon-1 replay the last `period` ones: no episode ends in them
            # (the alive mass is back where it was), each pays its step reward again.
            cycle = [r for _, r in recent[-period:]]  # step rewards of steps t-period+1 .. t
            for j in range(period):  # step t+1+j, t+1+j+period, ... pays cycle[j]
                n = len(range(j, left, period))
                g0, gp = gamma ** (t + 1 + j), gamma**period
                ret += cycle[j] * g0 * (n if gp == 1.0 else (1.0 - gp**n) / (1.0 - gp))
            length += d.sum(-1) * left
            break
    shape = lead if len(lead) else ()
    return {"return": ret.reshape(shape), "success": succ.reshape(shape), "length": length.reshape(shape)}


def uniform_policy(tables) -> torch.Tensor:
    """(..., S, A) the uniformly random policy."""
    ns = _table(tables, "next_state")
    return torch.full(ns.shape[:-1], 1.0 / ns.shape[-2], dtype=torch.float64, device=ns.device)


def normalized_score(value: torch.Tensor, uniform: torch.Tensor, optimum: torch.Tensor) -> torch.Tensor:
    """(R - R_uniform) / (R* - R_uniform): 0 for the uniformly random policy, 1 for an optimal one,
    whatever the sign and scale of the rewards. Where every policy is as good as the random one
    (R* = R_uniform) every policy is optimal, and the score is 1."""
    gap = optimum - uniform
    flat = gap.abs() <= 1e-12 * torch.clamp(optimum.abs(), min=1.0)
    return torch.where(flat, torch.ones_like(gap), (value - uniform) / torch.where(flat, torch.ones_like(gap), gap))


def time_limited_return(mdp: TabularMDP, policy: torch.Tensor, gamma: float, horizon: int) -> torch.Tensor:
    """Expected discounted return of `policy` (S, A) from the start distribution over episodes cut
    after `horizon` steps (what a rollout under that time limit estimates): `horizon` policy
    backups from V = 0, differentiable in the policy. Scalar, in the policy's dtype."""
    reward = mdp.reward.to(policy.dtype)
    v = torch.zeros(mdp.num_states, dtype=policy.dtype)  # (S,)
    for _ in range(horizon):
        v = (policy * _backup(mdp, v, gamma, reward)).sum(-1)  # (S,)
    return (mdp.start.to(policy.dtype) * v).sum()


def policy_values(mdp: TabularMDP, policy: torch.Tensor, gamma: float) -> torch.Tensor:
    """Exact values v_pi (S,) of a stochastic policy (S, A) with no time limit, differentiable in
    the policy: solves (I - gamma P_pi) v = r_pi, where P_pi counts only transitions that do not
    end the episode."""
    S = mdp.num_states
    dtype = policy.dtype
    weight = policy[:, :, None] * mdp.prob.to(dtype)  # (S, A, O)
    # Transition matrix under pi, cut at termination: P_pi[s, s'] = sum_{a,o} pi p (1 - done) 1[s'_o = s'].
    P = torch.zeros(S, S, dtype=dtype, device=policy.device)
    rows = torch.arange(S, device=policy.device)[:, None, None].expand_as(mdp.next_state)
    P = P.index_put((rows, mdp.next_state), weight * (~mdp.done).to(dtype), accumulate=True)  # (S, S)
    r = (weight * mdp.reward.to(dtype)).sum((1, 2))  # (S,)
    eye = torch.eye(S, dtype=dtype, device=policy.device)
    return torch.linalg.solve(eye - gamma * P, r)


def expected_return(mdp: TabularMDP, policy: torch.Tensor, gamma: float) -> torch.Tensor:
    """Expected discounted return of `policy` (S, A) from the start distribution (scalar)."""
    return (mdp.start.to(policy.dtype) * policy_values(mdp, policy, gamma)).sum()
