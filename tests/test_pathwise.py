"""agent.pathwise: the entropy bonus over the next cell (`--entropy-over cells`)."""

from __future__ import annotations

import math

import pytest
import torch

from agent.config import TrainConfig
from agent.factory import build_env, build_learner, build_networks, build_world, resolve_defaults
from agent.pathwise import cell_entropy


def test_cell_entropy_is_the_action_entropy_when_every_move_lands_elsewhere():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    next_cell = torch.tensor([[1, 2, 3, 4]]).expand(6, 4)
    expected = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(cell_entropy(logits, next_cell), expected)


def test_cell_entropy_is_the_entropy_of_the_next_cell_distribution():
    # Brute force: add up the probability of each distinct next cell, then take its entropy.
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 4, generator=g)
    next_cell = torch.randint(0, 3, (50, 4), generator=g)  # many repeated outcomes
    got = cell_entropy(logits, next_cell)
    pi = logits.softmax(-1)
    for b in range(50):
        mass: dict[int, float] = {}
        for a in range(4):
            mass[int(next_cell[b, a])] = mass.get(int(next_cell[b, a]), 0.0) + float(pi[b, a])
        expected = -sum(q * math.log(q) for q in mass.values())
        assert got[b].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_in_a_dead_end_the_bonus_pulls_towards_the_way_out():
    # Cell 7 is a dead end: up/down/left bump (stay at 7), right leads to 8.
    logits = torch.zeros(1, 4, requires_grad=True)  # uniform: 3/4 of the mass stays
    next_cell = torch.tensor([[7, 7, 7, 8]])
    h = cell_entropy(logits, next_cell)
    assert h.item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    h.sum().backward()
    assert logits.grad[0, 3] > 0 > logits.grad[0, 0]  # more entropy = more mass on the exit
    # Its maximum is stay/leave at 1/2 each (ln 2), above the uniform policy's value.
    half = torch.log(torch.tensor([[1 / 6, 1 / 6, 1 / 6, 1 / 2]]))
    assert cell_entropy(half, next_cell).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize(
    ("world", "entropy_over", "uses_cells"),
    [
        ({"env": "maze:9x9"}, "cells", True),
        ({"env": "four_rooms"}, "cells", True),
        ({"env": "four_rooms"}, "actions", False),
        ({"env": "four_rooms", "slip": 0.2}, "cells", False),  # random moves: no single next cell
    ],
)
def test_the_learner_reads_the_bonus_the_config_and_world_ask_for(world, entropy_over, uses_cells):
    cfg = TrainConfig(**world, num_envs=8, hidden=16, entropy_over=entropy_over, wandb_mode="disabled")
    cfg = resolve_defaults(cfg, build_world(cfg))
    env = build_env(cfg, torch.device("cpu"))
    env.reset()
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
    logits = torch.randn(8, 4)
    got = learner._entropy(env, logits, env.world_id, env.state)
    by_cells = cell_entropy(logits, env.next_state[env.world_id, env.state, :, 0])
    by_actions = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(got, by_cells if uses_cells else by_actions)
    # Starts sit next to walls, so the two readings differ there: the test can tell them apart.
    assert not torch.allclose(by_cells, by_actions)
