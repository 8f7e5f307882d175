"""agent.run.scoring: the exact evaluation on the tabular core against Monte-Carlo estimates of the
same policy under the same time limit, and the normalised score on worlds of every reward sign."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agent.run.scoring import exact_evaluation, policy_table, reference_returns, run_episodes
from envs import (
    BatchedGridWorld,
    from_gymnasium,
    load_map,
    normalized_score,
    optimal_time_limited_return,
    policy_metrics,
    value_iteration,
)


def _table_policy(actions: torch.Tensor, A: int = 4, sharpness: float = 10.0) -> nn.Module:
    """A network that plays `actions[s]` (S,) from a one-hot observation of cell s (greedily; with
    a small `sharpness` its softmax is a genuinely random policy)."""
    S = actions.shape[0]
    net = nn.Linear(S, A, bias=False)
    with torch.no_grad():
        net.weight.copy_(sharpness * torch.nn.functional.one_hot(actions, A).T.float())  # (A, S)
    return net


@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "sampled"])
def test_exact_evaluation_matches_monte_carlo(greedy):
    # Slippery FrozenLake 8x8: returns, successes and lengths are all random. The exact values must
    # lie within 4 standard errors of the means of 20,000 sampled episodes (a correct evaluator
    # fails this about once in 15,000 seeds; the seeds are fixed).
    gamma = 0.99
    mdp = from_gymnasium("FrozenLake-v1", map_name="8x8", is_slippery=True)
    policy = _table_policy(value_iteration(mdp, gamma).policy, sharpness=10.0 if greedy else 1.0)
    env = BatchedGridWorld(mdp, 20_000, obs_mode="onehot", seed=0)
    result = exact_evaluation(policy, env, gamma=gamma, greedy=greedy)
    ep = run_episodes(policy, env, gamma=gamma, greedy=greedy, generator=torch.Generator().manual_seed(1))
    pairs = (("exact_success_rate", "success"), ("exact_length", "length"), ("exact_return", "discounted"))
    for exact, sampled in pairs:
        x = ep[sampled].double()
        se = float(x.std()) / math.sqrt(len(x))
        assert abs(result[exact] - float(x.mean())) < 4 * se, (exact, result[exact], float(x.mean()), se)
    assert 0 < result["exact_success_rate"] < 1


def test_exact_evaluation_of_the_optimum_scores_one_and_the_uniform_policy_zero():
    gamma = 0.99
    for mdp in (load_map("four_rooms"), from_gymnasium("CliffWalking-v1"), from_gymnasium("Taxi-v4")):
        T = mdp.max_episode_steps
        env = BatchedGridWorld(mdp, 8, obs_mode="onehot", seed=0)
        # The time-limited optimum's first action is optimal with T steps left; a stationary greedy
        # policy of the untruncated values is optimal on these deterministic worlds.
        best = exact_evaluation(_table_policy(value_iteration(mdp, gamma).policy, mdp.num_actions), env, gamma=gamma)
        assert best["normalized_score"] == pytest.approx(1.0, abs=1e-9), mdp.name
        assert best["optimal_return"] == pytest.approx(value_iteration(mdp, gamma, horizon=T).optimal_return)
        uniform = exact_evaluation(
            nn.Linear(mdp.num_states, mdp.num_actions, bias=False)
            .requires_grad_(False)
            .apply(lambda m: nn.init.zeros_(m.weight)),
            env,
            gamma=gamma,
            greedy=False,
        )
        assert uniform["normalized_score"] == pytest.approx(0.0, abs=1e-9), mdp.name


def test_normalised_score_on_negative_rewards_is_finite_and_ordered():
    # CliffWalking pays -1 a step and -100 a fall: the optimum is negative, yet the score is
    # defined, 1 at the optimum, 0 for the random policy, and orders the policies in between.
    gamma = 0.99
    mdp = from_gymnasium("CliffWalking-v1")
    env = BatchedGridWorld(mdp, 8, obs_mode="onehot", seed=0)
    ref = reference_returns(env, gamma)
    assert float(ref["optimal"]) < 0 and float(ref["uniform"]) < float(ref["optimal"])
    stay_up = torch.zeros(mdp.num_states, dtype=torch.long)  # always "up": never reaches the goal
    scores = [
        exact_evaluation(_table_policy(a), env, gamma=gamma, reference=ref)["normalized_score"]
        for a in (stay_up, value_iteration(mdp, gamma).policy)
    ]
    assert all(math.isfinite(x) for x in scores)
    assert 0.0 < scores[0] < scores[1] == pytest.approx(1.0)


def test_normalised_score_where_every_policy_is_optimal_is_one():
    one = torch.tensor([0.5], dtype=torch.float64)
    assert normalized_score(one, one, one).tolist() == [1.0]
    assert normalized_score(torch.tensor([-3.0]), torch.tensor([-4.0]), torch.tensor([-2.0])).tolist() == [0.5]


def test_exact_evaluation_of_a_maze_pool_is_the_mean_over_its_mazes():
    from agent.learning.policy import PolicyNet
    from envs import make_world

    torch.manual_seed(0)
    policy = PolicyNet((4, 9, 9), 4, hidden=16)
    mazes = make_world("maze:9x9").sample_many(5, 11)
    env = BatchedGridWorld(mazes, 5, obs_mode="image", seed=0)
    got = exact_evaluation(policy, env, gamma=0.99)
    table = policy_table(policy, env)  # (W, S, A)
    per_maze = [policy_metrics(m, table[w], 0.99, env.max_episode_steps) for w, m in enumerate(mazes)]
    optima = [float(optimal_time_limited_return(m, 0.99, env.max_episode_steps)) for m in mazes]
    assert got["exact_success_rate"] == pytest.approx(sum(float(p["success"]) for p in per_maze) / 5)
    assert got["optimal_return"] == pytest.approx(sum(optima) / 5)
    # The table is the network on each maze's image with the agent in each cell.
    cell = 10
    obs = env.observe(torch.nn.functional.one_hot(torch.tensor([cell] * 5), 81).float(), torch.arange(5))
    assert torch.equal(table[:, cell].argmax(-1), policy(obs).argmax(-1))


def test_an_evaluation_plays_each_maze_of_its_pool_once():
    # A pool of 16 unseen mazes evaluated with B = 16 must give, env by env, the episodes of
    # the same 16 mazes laid out one per env; drawn with replacement, some would come twice.
    from agent.learning.policy import PolicyNet
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
