"""agent.learning.policy: network shapes, the one-hot critic as a table of cells, and the image critic as a
value map read off the agent plane."""

from __future__ import annotations

import pytest
import torch

from agent.learning.ensemble import Ensemble
from agent.learning.policy import PolicyNet, ValueNet
from envs import BatchedGridWorld, make_world


@pytest.mark.parametrize("obs_shape", [(25,), (4, 7, 7)])
def test_output_shapes(obs_shape):
    torch.manual_seed(0)
    obs = torch.rand(5, *obs_shape)
    assert PolicyNet(obs_shape, 4, 32)(obs).shape == (5, 4)
    assert ValueNet(obs_shape, 32)(obs).shape == (5,)
    assert ValueNet(obs_shape, 32, value_map=False)(obs).shape == (5,)  # --no-value-map


def test_no_value_map_reads_the_whole_image():
    critic = ValueNet((4, 9, 9), 32, value_map=False)
    assert not critic.map_form and critic.head.out_features == 1
    assert critic.body[0].in_channels == 4  # the agent plane goes into the CNN


def maze_obs(n: int = 6) -> torch.Tensor:
    env = BatchedGridWorld(make_world("maze:9x9"), n, obs_mode="image", seed=0)
    return env.reset()[0]  # (n, 4, 9, 9), the agent plane last


def with_agent(obs: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
    """`obs` with its agent plane replaced by `agent` (n, H, W)."""
    return torch.cat([obs[:, :3], agent[:, None]], 1)


def test_image_value_is_the_map_at_the_agent_cell():
    torch.manual_seed(0)
    critic = ValueNet((4, 9, 9), 32)
    obs = maze_obs()
    maps = critic.value_map(obs[:, :3])  # (n, 81)
    cell = obs[:, 3].flatten(1).argmax(-1)  # (n,)
    torch.testing.assert_close(critic(obs), maps[torch.arange(len(obs)), cell])


def test_image_value_is_linear_in_the_agent_plane():
    # The pathwise read: moving mass between cells moves the value by exactly the map's entries,
    # and the derivative along the agent plane is the map itself.
    torch.manual_seed(1)
    critic = ValueNet((4, 9, 9), 32)
    obs = maze_obs(3)
    other = with_agent(obs, torch.roll(obs[:, 3], 1, dims=-1))
    mix = with_agent(obs, 0.3 * obs[:, 3] + 0.7 * other[:, 3])
    torch.testing.assert_close(critic(mix), 0.3 * critic(obs) + 0.7 * critic(other))
    agent = obs[:, 3].clone().requires_grad_(True)
    critic(with_agent(obs, agent)).sum().backward()
    torch.testing.assert_close(agent.grad.flatten(1), critic.value_map(obs[:, :3]).detach())


def test_image_value_ignores_where_the_agent_is_not():
    # Only the static planes feed the map: the agent plane enters through the read alone.
    torch.manual_seed(2)
    critic = ValueNet((4, 9, 9), 32)
    obs = maze_obs(2)
    moved = with_agent(obs, torch.roll(obs[:, 3], 2, dims=-2))
    torch.testing.assert_close(critic.value_map(obs[:, :3]), critic.value_map(moved[:, :3]))
    assert not torch.allclose(critic(obs), critic(moved))


def test_the_one_hot_critic_is_a_table_of_cells_in_units_of_its_scale():
    S = 6
    cells = torch.eye(S)
    critic = ValueNet((S,), 32, scale=100.0)
    assert torch.equal(critic(cells), torch.zeros(S))  # every value starts at 0
    opt = torch.optim.SGD(critic.parameters(), lr=0.1)
    (critic(cells[2:3]) - 50.0).pow(2).sum().backward()  # one cell's error
    opt.step()
    values = critic(cells).detach()
    # Only that cell moved apart from the others: the rest share one offset and no hidden layer.
    others = torch.cat([values[:2], values[3:]])
    assert torch.allclose(others, others[0].expand_as(others))
    assert values[2] - others[0] > 1.0
    # The scale multiplies the table: the same weights at scale 1 give values 100 times smaller.
    unit = ValueNet((S,), 32, scale=1.0)
    unit.load_state_dict({**critic.state_dict(), "scale": torch.tensor(1.0)})
    torch.testing.assert_close(unit(cells) * 100.0, values)


@pytest.mark.parametrize("members", [1, 3])
def test_every_cell_is_the_forward_on_the_identity_bit_for_bit_gradients_included(members):
    """The pathwise learner's logit table skips the first layer's product with eye(S): each of its
    sums has one nonzero term, so nothing may differ, not even in the last bit."""
    torch.manual_seed(4)
    nets = [PolicyNet((9,), 4, 16) for _ in range(members)]
    net = nets[0] if members == 1 else Ensemble(nets)
    eye = torch.eye(9) if members == 1 else torch.eye(9).expand(members, -1, -1)
    fast, slow = net.every_cell(9), net(eye)  # (S, A) or (N, S, A)
    assert fast.shape == slow.shape == (*eye.shape[:-1], 4)
    assert torch.equal(fast, slow)
    g = torch.randn_like(fast)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            torch.autograd.grad(fast, list(net.parameters()), g),
            torch.autograd.grad(slow, list(net.parameters()), g),
            strict=True,
        )
    )
