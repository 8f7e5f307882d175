"""agent.learning.rollout: the exploration bonus reads the same off cell indices as off live positions."""

from __future__ import annotations

import torch

from agent.learning.rollout import VisitBonus


def test_bonus_at_states_equals_the_live_position_reading():
    bonus = VisitBonus(2, 9, 0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        bonus.visit(torch.randint(9, (40,), generator=g), torch.randint(2, (40,), generator=g))
    state, world = torch.randint(9, (40,), generator=g), torch.randint(2, (40,), generator=g)
    live = (torch.rand(40, generator=g) < 0.7).float()  # some transitions ended the episode
    live_pos = torch.nn.functional.one_hot(state, 9).float() * live[:, None]
    assert torch.equal(bonus.at_states(state, world, live), bonus(live_pos, world))
    assert (bonus(live_pos, world)[live == 0] == 0).all()  # an ending transition earns no bonus
    assert (bonus(live_pos, world)[live == 1] > 0).all()
