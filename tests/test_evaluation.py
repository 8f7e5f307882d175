"""agent.evaluation: the Monte-Carlo scores of `evaluate` against exact values of the same policy
under the same time limit (so the normalised score is unbiased and an optimal policy scores 1)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agent.evaluation import evaluate, optimal_return
from envs import BatchedGridWorld, from_gymnasium, time_limited_return, value_iteration


def _table_policy(actions: torch.Tensor) -> nn.Module:
    """A network that plays `actions[s]` (S,) from a one-hot observation of cell s."""
    S = actions.shape[0]
    net = nn.Linear(S, 4, bias=False)
    with torch.no_grad():
        net.weight.copy_(10.0 * torch.nn.functional.one_hot(actions, 4).T.float())  # (A, S)
    return net


def test_normalised_score_is_the_policy_value_over_the_time_limited_optimum():
    gamma = 0.99
    mdp = from_gymnasium("FrozenLake-v1", map_name="8x8", is_slippery=True)
    actions = value_iteration(mdp, gamma).policy  # the untruncated optimum's stationary policy
    T = mdp.max_episode_steps
    greedy = torch.nn.functional.one_hot(actions, 4).double()  # (S, A)
    exact = float(time_limited_return(mdp, greedy, gamma, T)) / value_iteration(mdp, gamma, horizon=T).optimal_return
    env = BatchedGridWorld(mdp, 20_000, obs_mode="onehot", seed=0)
    assert optimal_return(env, gamma) == pytest.approx(value_iteration(mdp, gamma, horizon=T).optimal_return)
    result = evaluate(_table_policy(actions), env, gamma=gamma)
    # Discounted returns lie in [0, 1], so their sd is at most 0.5: 4 standard errors.
    tolerance = 4 * 0.5 / math.sqrt(env.num_envs) / optimal_return(env, gamma)
    assert result["normalized_score"] == pytest.approx(exact, abs=tolerance)
    assert 0.9 < exact <= 1.0  # near-optimal under the limit, never above the optimum
