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


def test_an_evaluation_plays_each_maze_of_its_pool_once():
    # A pool of 16 unseen mazes evaluated with B = 16 must give, env by env, the episodes of
    # the same 16 mazes laid out one per env; drawn with replacement, some would come twice.
    from agent.evaluation import run_episodes
    from agent.policy import PolicyNet
    from envs import make_world

    torch.manual_seed(3)
    policy = PolicyNet((4, 9, 9), 4, hidden=16)  # untrained: sampled walks, the same noise in both
    pooled = BatchedGridWorld("maze:9x9", 16, obs_mode="image", seed=5, maze_seed=77)
    laid_out = BatchedGridWorld(make_world("maze:9x9").sample_many(16, 77), 16, obs_mode="image", seed=5)
    got = run_episodes(policy, pooled, gamma=0.99, greedy=False, generator=torch.Generator().manual_seed(0))
    want = run_episodes(policy, laid_out, gamma=0.99, greedy=False, generator=torch.Generator().manual_seed(0))
    assert len(set(want["length"].tolist())) > 2  # the mazes do tell the episodes apart
    for key in ("length", "success", "return"):
        assert torch.equal(got[key], want[key]), key
