"""agent.rollout: the critic fit's table path equals the plain fit, and the exploration bonus reads
the same off cell indices as off one-hot positions."""

from __future__ import annotations

import copy

import torch

from agent.policy import ValueNet
from agent.rollout import VisitBonus, _one_hot_cells, fit_critic


def _plain_fit(critic, optimizer, obs, targets, *, epochs, num_minibatches, generator):
    """The fit written without the table shortcut (what fit_critic did before it)."""
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


def test_one_hot_critic_fit_matches_the_plain_fit():
    torch.manual_seed(0)
    S, n = 25, 512
    cells = torch.randint(S, (n,), generator=torch.Generator().manual_seed(1))
    obs = torch.nn.functional.one_hot(cells, S).float()  # (n, S)
    targets = torch.rand(n, generator=torch.Generator().manual_seed(2))
    assert torch.equal(_one_hot_cells(obs), cells)
    a = ValueNet((S,), 32)
    b = copy.deepcopy(a)
    before = a.head.weight.detach().clone()
    opt_a, opt_b = (torch.optim.Adam(m.parameters(), lr=1e-2) for m in (a, b))
    fit_critic(a, opt_a, obs, targets, epochs=3, num_minibatches=4, generator=torch.Generator().manual_seed(3))
    _plain_fit(b, opt_b, obs, targets, epochs=3, num_minibatches=4, generator=torch.Generator().manual_seed(3))
    # Same minibatches and the same maths; only float summation order differs (12 Adam steps).
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4)
    assert (a.head.weight - before).abs().max() > 1e-3  # it did train


def test_non_one_hot_observations_take_the_plain_path():
    assert _one_hot_cells(torch.rand(64, 8)) is None  # not one-hot
    assert _one_hot_cells(torch.eye(8)[:4]) is None  # fewer rows than cells
    assert _one_hot_cells(torch.zeros(64, 4, 3, 3)) is None  # images


def test_bonus_at_states_equals_the_position_reading():
    terminal = torch.zeros(2, 9, dtype=torch.bool)
    terminal[:, 8] = True
    bonus = VisitBonus(terminal, 0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        bonus.visit(torch.randint(9, (40,), generator=g), torch.randint(2, (40,), generator=g))
    state, world = torch.randint(9, (40,), generator=g), torch.randint(2, (40,), generator=g)
    pos = torch.nn.functional.one_hot(state, 9).float()
    assert torch.equal(bonus.at_states(state, world), bonus(pos, world))
    assert (bonus.at_states(torch.full((2,), 8), torch.tensor([0, 1])) == 0).all()  # terminal: no bonus
