"""envs.diffstep: the step without positions (ActionStep) against the one-hot step through them."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import one_hot

from envs import BatchedGridWorld, load_map
from envs.diffstep import ActionStep


def _grad(output: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(output, wrt, retain_graph=True)
    return g


@pytest.mark.parametrize("slip_gradient", ["sampled", "expected"])
def test_action_step_is_the_one_hot_step_without_positions_bit_for_bit(slip_gradient):
    """ActionStep (a look-ahead of one: no (B, S) positions) gives the reward, the reads of cell
    tables off the live position and their action gradient exactly as OneHotStep and autograd
    do through the positions, under either slip gradient, ending transitions included."""
    mdp = load_map("lava_gap", slip=0.6, step_reward=-0.01, hazard_reward=-3.0)
    live = torch.nonzero(mdp.reachable()).flatten()
    B, S = len(live), mdp.num_states
    gen = torch.Generator().manual_seed(5)
    per_env, shared = torch.randn(B, S, generator=gen), torch.randn(1, S, generator=gen)  # two cell tables
    w_r, w_1, w_2 = (torch.randn(B, generator=gen) for _ in range(3))  # upstream weights of the three outputs
    taken = torch.arange(B) % 4
    outs = {}
    for path in ("positions", "action step"):
        env = BatchedGridWorld(mdp, B, obs_mode="onehot", seed=3, slip_gradient=slip_gradient)
        env.reset(options={"state": live})[0]
        a = one_hot(taken, 4).float().requires_grad_()
        w, s = env.world_id, env.state
        if path == "positions":
            _, reward, terminated, _, info = env.step(a)
            reads = [(info["live_pos"] * per_env).sum(-1), (info["live_pos"] * shared).sum(-1)]
        else:
            _, _, terminated, _, info = env.step(taken)
            o = info["outcome"]
            cells, r, c, p = env.tables.every_action(w, s, o, slip_gradient == "expected")  # (B, A[, O]) each
            at_cells = per_env.gather(1, cells.reshape(B, -1)).reshape(cells.shape)
            reward, *reads = ActionStep.apply(a, r, c, p, taken, o, at_cells, shared[0][cells])
        loss = (w_r * reward + w_1 * reads[0] + w_2 * reads[1]).sum()
        outs[path] = (reward, *reads, _grad(loss, a), info["outcome"], terminated)
    assert outs["positions"][-1].any() and not outs["positions"][-1].all()  # some transitions end
    assert len(torch.unique(outs["positions"][-2])) == 3  # all three slip outcomes occurred
    for x, y in zip(outs["positions"], outs["action step"], strict=True):
        assert torch.equal(x, y)
