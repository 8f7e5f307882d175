"""agent.critic: the critic fit's table path equals the plain fit, and Watkins's Q(lambda) targets."""

from __future__ import annotations

import copy

import pytest
import torch

from agent.critic import cell_values, fit_critic, greedy_lambda_returns
from agent.policy import ValueNet
from envs import BatchedGridWorld


def _plain_fit(critic, optimizer, obs, targets, *, epochs, num_minibatches, generator):
    """The fit written without the table shortcut: one network pass per sample."""
    n = targets.shape[0]
    size = max(1, n // num_minibatches)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, size):
            idx = order[i : i + size]
            loss = 0.5 * (critic(obs[idx]) - targets[idx]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


@pytest.mark.parametrize(("world", "obs_mode"), [("four_rooms", "onehot"), ("maze:7x7", "image")])
def test_the_table_critic_fit_matches_the_plain_fit(world, obs_mode):
    # Samples in random cells of random worlds: read off the table (one pass per distinct world),
    # the fit takes the same minibatches and steps as one network pass per sample.
    torch.manual_seed(0)
    n = 512
    env = BatchedGridWorld(world, n, obs_mode=obs_mode, seed=1, maze_pool=6)
    g = torch.Generator().manual_seed(1)
    live = torch.nonzero(env.reachable).tolist()  # (world, cell) pairs an agent can be in
    pick = torch.randint(len(live), (n,), generator=g)
    worlds = torch.tensor([live[i][0] for i in pick])
    cells = torch.tensor([live[i][1] for i in pick])
    obs = env.observe(torch.nn.functional.one_hot(cells, env.S).float(), worlds)  # (n, ...)
    targets = torch.rand(n, generator=torch.Generator().manual_seed(2))
    a = ValueNet(env.observation_shape, 32)
    b = copy.deepcopy(a)
    assert cell_values(a, env, worlds[:3]) is not None
    before = a.head.weight.detach().clone()
    opt_a, opt_b = (torch.optim.Adam(m.parameters(), lr=1e-2) for m in (a, b))
    fit_critic(
        a,
        opt_a,
        env,
        targets[None],  # one agent's samples, (1, n)
        obs=obs[None],
        cells=cells[None],
        worlds=worlds[None],
        epochs=3,
        num_minibatches=4,
        generator=torch.Generator().manual_seed(3),
    )
    _plain_fit(b, opt_b, obs, targets, epochs=3, num_minibatches=4, generator=torch.Generator().manual_seed(3))
    # Same minibatches and the same maths; only float summation order differs (12 Adam steps, with
    # convolutions over other batch sizes for images), far below the 1e-3 the fit moves weights.
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-4, rtol=1e-3)
    assert (a.head.weight - before).abs().max() > 1e-3  # it did train


def test_a_whole_image_critic_has_no_cell_table():
    env = BatchedGridWorld("maze:7x7", 4, obs_mode="image", seed=0)
    assert cell_values(ValueNet(env.observation_shape, 16, value_map=False), env, torch.arange(2)) is None


# --------------------------------------------------------------------------- Watkins's Q(lambda)
def _greedy_targets(
    rewards, greedy_values, taken, terminated=None, truncated=None, final=None, last=None, gamma=0.9, lam=0.5
):
    T, B = rewards.shape
    off = torch.zeros(T, B, dtype=torch.bool)
    return greedy_lambda_returns(
        rewards,
        greedy_values,
        taken,
        off if terminated is None else terminated,
        off if truncated is None else truncated,
        torch.zeros(T, B) if final is None else final,
        torch.zeros(B) if last is None else last,
        gamma,
        lam,
    )


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_greedy_targets_of_the_optimal_values_are_those_values(lam):
    # A corridor walked greedily towards a goal paying 1 at the end: with V = V* every target is
    # V*(s_t), whatever lambda: V* is the fixed point of the greedy backup.
    gamma, T = 0.9, 5
    v_star = torch.tensor([gamma ** (T - 1 - t) for t in range(T)])[:, None]  # (T, 1)
    rewards = torch.zeros(T, 1)
    rewards[-1] = 1.0
    terminated = torch.zeros(T, 1, dtype=torch.bool)
    terminated[-1] = True
    taken = torch.ones(T, 1, dtype=torch.bool)
    got = _greedy_targets(rewards, v_star, taken, terminated=terminated, gamma=gamma, lam=lam)
    torch.testing.assert_close(got, v_star)


def test_a_non_greedy_action_cuts_the_trace():
    rewards = torch.tensor([[0.0], [5.0], [0.0]])
    greedy = torch.tensor([[0.3], [0.2], [0.1]])
    taken = torch.tensor([[True], [False], [True]])
    got = _greedy_targets(rewards, greedy, taken, last=torch.tensor([2.0]), gamma=0.5, lam=1.0)
    # t = 2: greedy, follows the rest: 0 + 0.5 * 2.0. t = 1: not greedy, so the greedy backup 0.2,
    # not the 5 it happened to earn. t = 0: 0 + 0.5 * (the target at t = 1) with lambda = 1.
    torch.testing.assert_close(got, torch.tensor([[0.1], [0.2], [1.0]]))


def test_greedy_targets_at_episode_ends_and_with_lambda_one():
    g, T = 0.5, 4
    rewards = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    taken = torch.ones(T, 2, dtype=torch.bool)
    terminated = torch.zeros(T, 2, dtype=torch.bool)
    truncated = torch.zeros(T, 2, dtype=torch.bool)
    terminated[1, 0] = True  # env 0 ends at t = 1; a new episode runs from t = 2
    truncated[2, 1] = True  # env 1 hits the time limit at t = 2: its successor's value closes it
    final = torch.full((T, 2), 10.0)
    got = _greedy_targets(
        rewards, torch.zeros(T, 2), taken, terminated, truncated, final, last=torch.tensor([8.0, 8.0]), gamma=g, lam=1.0
    )
    assert got[:, 0].tolist() == [1 + g * 2, 2.0, 3 + g * (4 + g * 8), 4 + g * 8]
    assert got[:, 1].tolist() == [1 + g * (2 + g * (3 + g * 10)), 2 + g * (3 + g * 10), 3 + g * 10, 4 + g * 8]
