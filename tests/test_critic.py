"""agent.learning.critic: the critic fit's table path equals the plain fit, and greedy backups through the
env's tables are value iteration."""

from __future__ import annotations

import copy

import pytest
import torch

from agent.learning.critic import cell_values, fit_critic, greedy_backups
from agent.learning.policy import ValueNet
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
    before = [p.detach().clone() for p in a.parameters()]
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
    assert max((p - q).abs().max() for p, q in zip(a.parameters(), before, strict=True)) > 1e-3  # it did train


def test_a_whole_image_critic_has_no_cell_table():
    env = BatchedGridWorld("maze:7x7", 4, obs_mode="image", seed=0)
    assert cell_values(ValueNet(env.observation_shape, 16, value_map=False), env, torch.arange(2)) is None


# --------------------------------------------------------------------------- greedy backups
@pytest.mark.parametrize(
    ("world", "kwargs"),
    [
        ("four_rooms", {"slip": 0.2, "step_reward": -0.05, "hazard_reward": -1.0}),  # 3 outcomes, negative rewards
        ("Taxi-v4", {}),  # 6 actions, episodes end on the drop-off action, not on a state
        ("CliffWalking-v1", {"env_kwargs": {"is_slippery": True}}),
        ("mazes", {}),  # several worlds at once
    ],
)
def test_k_backups_from_zero_are_the_k_step_optimum_of_each_world(world, kwargs):
    # k backups from V = 0 are backward induction: the best expected return over k steps, which
    # the oracle computes on its own (float64, one world at a time) as value_iteration(horizon=k).
    from envs.maze import parse_maze_spec
    from envs.oracle import value_iteration

    mdps = parse_maze_spec("maze:7x7").sample_many(3, seed=0) if world == "mazes" else None
    env = BatchedGridWorld(mdps or world, 2, **kwargs)
    mdps = mdps or [env.mdp]
    worlds = torch.arange(env.num_worlds)
    for k in (1, 3, 12):
        got = greedy_backups(env, torch.zeros(2, env.num_worlds, env.S), worlds, 0.9, k)  # (2, W, S)
        for w, mdp in enumerate(mdps):
            expected = value_iteration(mdp, 0.9, horizon=k).values.float()
            torch.testing.assert_close(got[0, w], expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got[1, w], expected, atol=1e-5, rtol=1e-5)


def test_backups_start_from_each_table_and_reach_the_optimal_values():
    from envs.oracle import value_iteration

    env = BatchedGridWorld("four_rooms", 2, slip=0.1)
    v_star = value_iteration(env.mdp, 0.9).values.float()
    start = torch.stack([torch.zeros(env.S), v_star])[:, None]  # (2, 1, S): two tables of one world
    one = greedy_backups(env, start, torch.arange(1), 0.9, 1)
    # From V*, a backup stays at V* (its fixed point); from 0 it is the best single reward.
    torch.testing.assert_close(one[1, 0], v_star, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(one[0, 0], v_star, atol=1e-2)
    many = greedy_backups(env, start, torch.arange(1), 0.9, 400)  # contraction: gamma^400 ~ 5e-19
    torch.testing.assert_close(many[0, 0], v_star, atol=1e-4, rtol=1e-4)
