"""envs.batched: parity with GridWorldEnv, auto-reset bookkeeping, action checks, and the gradient
of the differentiable path against closed forms read off the tables (and a finite difference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit
from scipy import stats
from torch.nn.functional import one_hot

from envs import BUILTIN_MAPS, BatchedGridWorld, GridWorldEnv, load_map

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
# See tests/test_toy_text.py: fixed seeds, a correct sampler fails at 1e-3 in 0.1% of seeds.
P_MIN = 1e-3
UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3

# A cross of outcomes around the centre (2, 2) = state 12: moving right from each neighbour of
# the centre enters the goal (from 7), lava (from 17), the centre (from 11) or a wall (from 13).
CROSS = """
#####
#..G#
#.S.#
#..L#
#####
"""
CENTRE = 12


def _live_states(mdp) -> list[int]:
    return torch.nonzero(mdp.reachable()).flatten().tolist()


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["int", "onehot"])
@pytest.mark.parametrize("name", BUILTIN_MAPS)
def test_parity_with_grid_env(name, path, device):
    mdp = load_map(name)
    B, T = 3, 150
    rng = np.random.default_rng(BUILTIN_MAPS.index(name))
    starts = rng.choice(_live_states(mdp), size=B, replace=False)
    actions = rng.integers(4, size=(T, B))
    batched = BatchedGridWorld(mdp, B, obs_mode="onehot", seed=0, device=device)
    singles = [TimeLimit(GridWorldEnv(mdp), mdp.max_episode_steps) for _ in range(B)]
    obs = batched.reset(options={"state": torch.from_numpy(starts).to(device)})[0].cpu()
    expected = [env.reset(seed=0, options={"state": int(s)})[0] for env, s in zip(singles, starts, strict=True)]
    assert obs.argmax(-1).tolist() == expected
    returns, lengths, episodes = [0.0] * B, [0] * B, 0
    for t in range(T):
        a = torch.from_numpy(actions[t]).to(device)
        out = batched.step(a if path == "int" else one_hot(a, 4).float())
        obs, reward, terminated, truncated = (x.cpu() for x in out[:4])
        info = {k: v.cpu() if torch.is_tensor(v) else v for k, v in out[4].items()}
        if "episode" in info:  # gymnasium's convention: there only when an episode ended
            info["episode"] = {k: v.cpu() for k, v in info["episode"].items()}
        assert ("episode" in info) == bool(info["done"].any())
        for b, env in enumerate(singles):
            o, r, term, trunc, single_info = env.step(int(actions[t, b]))
            returns[b] += r
            lengths[b] += 1
            final = info["final_obs"][b]
            assert final.sum() == 1 and int(final.argmax()) == o
            assert float(reward[b]) == r
            assert bool(terminated[b]) == term
            # TimeLimit also flags a terminating last step as truncated; we say terminated only.
            assert bool(truncated[b]) == (trunc and not term)
            assert bool(info["done"][b]) == (term or trunc)
            if term or trunc:
                episodes += 1
                assert bool(info["success"][b]) == single_info["success"]
                assert bool(info["_episode"][b]) and bool(info["_final_obs"][b])
                assert float(info["episode"]["r"][b]) == pytest.approx(returns[b])
                assert int(info["episode"]["l"][b]) == lengths[b]
                o, _ = env.reset()  # every built-in has a single start cell
                returns[b], lengths[b] = 0.0, 0
            assert int(obs[b].argmax()) == o
    assert episodes >= 1


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_slippery_rollouts_repeat(device):
    # With slip the draws differ from GridWorldEnv's, but one seed must give one trajectory.
    def roll():
        env = BatchedGridWorld("four_rooms", 16, device=device, seed=5, slip=0.3)
        env.reset()
        gen = torch.Generator().manual_seed(0)
        out = []
        for _ in range(40):
            a = torch.randint(4, (16,), generator=gen).to(device)
            out.append(env.step(a)[4]["final_obs"].argmax(-1).cpu())
        return torch.stack(out)

    first = roll()
    assert torch.equal(first, roll())
    assert first.device.type == "cpu" and len(torch.unique(first)) > 10


# --------------------------------------------------------------------------- auto-reset & limits


def test_auto_reset_bookkeeping():
    mdp = load_map(CROSS, step_reward=-0.25, hazard_reward=-2.0)
    env = BatchedGridWorld(mdp, 3, obs_mode="index")
    env.reset(options={"state": torch.tensor([CENTRE, CENTRE, CENTRE])})[0]
    # Row 0: up, then right into the goal. Row 1: down, then right into lava. Row 2: left, right.
    obs, reward, terminated, truncated, info = env.step(torch.tensor([UP, DOWN, LEFT]))
    assert obs.tolist() == [7, 17, 11] and not info["done"].any()
    assert torch.equal(info["final_obs"], obs)
    assert "episode" not in info and env.elapsed.tolist() == [1, 1, 1]
    obs, reward, terminated, truncated, info = env.step(torch.tensor([RIGHT, RIGHT, RIGHT]))
    assert info["final_obs"].tolist() == [8, 18, CENTRE]  # the finished episodes' last cells
    assert obs.tolist() == [CENTRE, CENTRE, CENTRE]  # the unique start: new episodes began
    assert reward.tolist() == [1.0, -2.0, -0.25]
    assert terminated.tolist() == [True, True, False] and not truncated.any()
    assert info["done"].tolist() == info["_episode"].tolist() == info["_final_obs"].tolist() == [True, True, False]
    assert info["success"].tolist() == [True, False, False]
    assert info["episode"]["r"][:2].tolist() == [0.75, -2.25]  # rows where _episode
    assert info["episode"]["l"][:2].tolist() == [2, 2]
    assert (info["episode"]["t"][:2] >= 0).all()
    # The counters restarted only where an episode ended.
    env.step(torch.tensor([UP, UP, UP]))
    assert env.elapsed.tolist() == [1, 1, 3]
    assert env.episode_return.tolist() == [-0.25, -0.25, -0.75]


def test_truncation_at_max_episode_steps():
    env = BatchedGridWorld("empty", 2, obs_mode="index", max_episode_steps=3)
    start = env.reset()[0].tolist()
    assert start == [10, 10]
    for t in range(1, 8):
        obs, _, terminated, truncated, info = env.step(torch.tensor([UP, LEFT]))  # bump the wall
        assert not terminated.any()
        assert truncated.tolist() == [t % 3 == 0] * 2
        assert (info["episode"]["l"].tolist() == [3, 3]) if t % 3 == 0 else ("episode" not in info)
        assert obs.tolist() == start
    assert BatchedGridWorld("empty", 1).max_episode_steps == 50


def test_observation_modes():
    mdp = load_map("lava_gap")
    H, W = mdp.layout.height, mdp.layout.width
    for mode, shape, dtype in [
        ("index", (), torch.int64),
        ("onehot", (H * W,), torch.float32),
        ("image", (4, H, W), torch.float32),
    ]:
        env = BatchedGridWorld(mdp, 2, obs_mode=mode)
        obs = env.reset(options={"state": torch.tensor([10, 11])})[0]
        assert env.observation_shape == shape
        assert tuple(obs.shape) == (2, *shape) and obs.dtype == dtype
    # The image: wall, goal, hazard planes of the map, then the agent.
    planes = torch.from_numpy(mdp.layout.static_planes())
    assert torch.equal(obs[:, :3], planes.expand(2, 3, H, W))
    assert obs[0, 3].flatten().tolist() == one_hot(torch.tensor(10), H * W).float().tolist()
    assert obs[1, 3].flatten().argmax() == 11 and obs[1, 3].sum() == 1


def test_start_distribution_and_slip_frequencies():
    # Starts: uniform over the three S cells (chi-squared against uniform).
    env = BatchedGridWorld("#######\n#S...S#\n#..S..#\n#....G#\n#######", 3000, obs_mode="index", seed=1)
    counts = torch.bincount(env.reset()[0], minlength=28)
    assert set(torch.nonzero(counts).flatten().tolist()) == {8, 12, 17}
    assert stats.chisquare(counts[[8, 12, 17]].numpy()).pvalue > P_MIN
    # Slip: right from (3, 3) in the empty room goes right 0.6, up 0.2, down 0.2; both paths.
    law = {3 * 9 + 4: 0.6, 2 * 9 + 3: 0.2, 4 * 9 + 3: 0.2}
    for path in ("int", "onehot"):
        env = BatchedGridWorld("empty", 3000, obs_mode="index", seed=2, slip=0.4)
        env.reset(options={"state": 3 * 9 + 3})[0]
        a = torch.full((3000,), RIGHT)
        _, _, _, _, info = env.step(a if path == "int" else one_hot(a, 4).float())
        counts = torch.bincount(info["final_obs"], minlength=81)
        assert set(torch.nonzero(counts).flatten().tolist()) == set(law)
        observed = [int(counts[k]) for k in law]
        assert stats.chisquare(observed, [3000 * p for p in law.values()]).pvalue > P_MIN


# --------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        (torch.tensor([0, 5]), "invalid action 5"),
        (torch.tensor([-1, 0]), "invalid action -1"),
        (np.array([0, 4]), "invalid action 4"),
        (torch.tensor([0, 1, 2]), "shape (2,)"),  # wrong B
        (torch.tensor(1), "got ()"),
        (torch.zeros(2, 3), "got (2, 3)"),  # one-hot over the wrong number of actions
        (torch.zeros(3, 4), "got (3, 4)"),  # wrong B
        (torch.tensor([True, False]), "torch.bool"),
    ],
)
def test_invalid_actions_raise_with_the_value(action, fragment):
    env = BatchedGridWorld("empty", 2)
    env.reset()
    with pytest.raises(ValueError) as err:
        env.step(action)
    assert fragment in str(err.value)


def test_invalid_constructor_and_reset_arguments():
    with pytest.raises(ValueError, match="num_envs=0"):
        BatchedGridWorld("empty", 0)
    with pytest.raises(ValueError, match="obs_mode='rgb'"):
        BatchedGridWorld("empty", 2, obs_mode="rgb")
    env = BatchedGridWorld("empty", 2)
    with pytest.raises(ValueError, match="start state 81 out of range"):
        env.reset(options={"state": 81})[0]
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        env.reset(options={"state": torch.tensor([10, 11, 12])})[0]
    assert env.reset(options={"state": np.array([10, 11])})[0].argmax(-1).tolist() == [10, 11]


# --------------------------------------------------------------------------- gradients


def _grad(output: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(output, wrt, retain_graph=True, allow_unused=True)
    return torch.zeros_like(wrt) if g is None else g


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("map_name", ["four_rooms", "lava_gap"])
def test_one_step_gradient_matches_the_tables(map_name, device):
    mdp = load_map(map_name, step_reward=-0.01, hazard_reward=-3.0)
    live = _live_states(mdp)
    B = len(live)  # every live cell at once, each row taking a different action
    states = torch.tensor(live)
    taken = torch.arange(B) % 4
    env = BatchedGridWorld(mdp, B, obs_mode="onehot", device=device)
    env.reset(options={"state": states.to(device)})[0]
    a = one_hot(taken, 4).float().to(device).requires_grad_()
    _, reward, terminated, _, info = env.step(a)
    ns, R = mdp.next_state[states, :, 0], mdp.reward[states, :, 0]  # (B, A) read off the tables
    # d reward[b] / d a[b, k] = reward of action k in row b's state.
    torch.testing.assert_close(_grad(reward.sum(), a).cpu(), R)
    assert reward.detach().cpu().tolist() == R[torch.arange(B), taken].tolist()
    # d next_pos[b, s'] / d a[b, k] = 1[ns(s_b, k) = s']; contracted with random weights v.
    v = torch.randn(B, mdp.num_states, generator=torch.Generator().manual_seed(0))
    next_pos = info["final_obs"]
    torch.testing.assert_close(_grad((next_pos * v.to(device)).sum(), a).cpu(), v.gather(1, ns))
    # The live position: d live_pos[b, s'] / d a[b, k] = 1[ns(s_b, k) = s'] (1 - done(s_b, k)),
    # and the soft termination signal 1 - sum(live_pos): d / d a[b, k] = done(s_b, k).
    done = mdp.done[states, :, 0]  # (B, A)
    assert terminated.cpu().tolist() == done[torch.arange(B), taken].tolist()
    torch.testing.assert_close(_grad((info["live_pos"] * v.to(device)).sum(), a).cpu(), v.gather(1, ns) * ~done)
    torch.testing.assert_close(_grad(info["terminated_soft"].sum(), a).cpu(), done.float())


@pytest.mark.parametrize("device", DEVICES)
def test_two_step_gradient_reaches_through_the_position(device):
    mdp = load_map(CROSS, step_reward=-0.25, hazard_reward=-2.0)
    env = BatchedGridWorld(mdp, 1, obs_mode="onehot", device=device)
    env.reset(options={"state": CENTRE})[0]
    a1 = one_hot(torch.tensor([UP]), 4).float().to(device).requires_grad_()
    a2 = one_hot(torch.tensor([RIGHT]), 4).float().to(device).requires_grad_()
    _, r1, *_ = env.step(a1)
    _, r2, terminated, _, info = env.step(a2)
    assert (r1.item(), r2.item(), terminated.item()) == (-0.25, 1.0, True)  # up, then into the goal
    # d r2 / d a1[k] = reward of moving right from wherever action k led: up -> 7 (right: goal),
    # down -> 17 (right: lava), left -> 11 (right: step), right -> 13 (right: wall, step).
    expected = torch.tensor([[1.0, -2.0, -0.25, -0.25]])
    ns = mdp.next_state[CENTRE, :, 0]
    torch.testing.assert_close(expected, mdp.reward[ns, RIGHT, 0][None])  # the closed form
    torch.testing.assert_close(_grad(r2.sum(), a1).cpu(), expected)
    torch.testing.assert_close(_grad(r2.sum(), a2).cpu(), mdp.reward[7, :, 0][None])
    torch.testing.assert_close(_grad((r1 + r2).sum(), a1).cpu(), expected - 0.25)
    # The second position, too: d next_pos2[s''] / d a1[k] = v[ns(ns(CENTRE, k), right)].
    v = torch.randn(1, mdp.num_states, generator=torch.Generator().manual_seed(1))
    ns2 = mdp.next_state[ns, RIGHT, 0]
    torch.testing.assert_close(_grad((info["final_obs"] * v.to(device)).sum(), a1).cpu(), v[:, ns2])


def test_two_step_gradient_matches_a_finite_difference():
    # A nudged (no longer one-hot) first action takes the dense reference path; the step is
    # bilinear, so the difference quotient equals the derivative up to float32 rounding.
    mdp = load_map(CROSS, step_reward=-0.25, hazard_reward=-2.0)

    def two_step_return(a1: torch.Tensor) -> torch.Tensor:
        env = BatchedGridWorld(mdp, 1, obs_mode="onehot")
        env.reset(options={"state": CENTRE})[0]
        r1 = env.step(a1)[1]
        return (r1 + env.step(one_hot(torch.tensor([RIGHT]), 4).float())[1]).sum()

    a1 = one_hot(torch.tensor([LEFT]), 4).float().requires_grad_()
    analytic = _grad(two_step_return(a1), a1)
    eps = 1e-2
    numeric = torch.stack(
        [
            (two_step_return(a1.detach() + eps * one_hot(torch.tensor([k]), 4)) - two_step_return(a1.detach())) / eps
            for k in range(4)
        ]
    )[None]
    torch.testing.assert_close(numeric, analytic, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(analytic, torch.tensor([[0.75, -2.25, -0.5, -0.5]]))


def test_gradient_with_slip_uses_the_drawn_outcome():
    mdp = load_map("four_rooms", slip=0.6, step_reward=-0.01)
    live = torch.tensor(_live_states(mdp))
    B = len(live)
    env = BatchedGridWorld(mdp, B, obs_mode="onehot", seed=3, slip_gradient="sampled")
    env.reset(options={"state": live})[0]
    a = one_hot(torch.arange(B) % 4, 4).float().requires_grad_()
    _, reward, _, _, info = env.step(a)
    o = info["outcome"]
    assert len(torch.unique(o)) == 3  # all three outcomes occurred
    # d reward[b] / d a[b, k] = reward of action k in row b's state under the outcome drawn.
    torch.testing.assert_close(_grad(reward.sum(), a), mdp.reward[live[:, None], torch.arange(4), o[:, None]])
    v = torch.randn(B, mdp.num_states, generator=torch.Generator().manual_seed(2))
    ns = mdp.next_state[live[:, None], torch.arange(4), o[:, None]]  # (B, A) under outcome o
    torch.testing.assert_close(_grad((info["final_obs"] * v).sum(), a), v.gather(1, ns))


def test_expected_slip_gradient_averages_the_outcomes():
    """slip_gradient="expected": the same forward, and the derivative of the step averaged over
    slip outcomes by their probabilities (here 0.4 intended, 0.3 each side, so a plain mean of
    the outcomes would fail)."""
    mdp = load_map("four_rooms", slip=0.6, step_reward=-0.01)
    live = torch.tensor(_live_states(mdp))
    B = len(live)
    runs = {}
    for mode in ("sampled", "expected"):
        env = BatchedGridWorld(mdp, B, obs_mode="onehot", seed=3, slip_gradient=mode)
        env.reset(options={"state": live})[0]
        env.pos.requires_grad_()
        pos = env.pos
        a = one_hot(torch.arange(B) % 4, 4).float().requires_grad_()
        _, reward, _, _, info = env.step(a)
        runs[mode] = (pos, a, reward, info)
    (_, _, r_s, info_s), (pos, a, reward, info) = runs["sampled"], runs["expected"]
    torch.testing.assert_close(reward, r_s)  # the forward does not change
    torch.testing.assert_close(info["final_obs"], info_s["final_obs"])
    p = mdp.prob[live]  # (B, A, O)
    torch.testing.assert_close(_grad(reward.sum(), a), (p * mdp.reward[live]).sum(-1))
    v = torch.randn(B, mdp.num_states, generator=torch.Generator().manual_seed(2))
    ns = mdp.next_state[live]  # (B, A, O)
    expected_a = (p * v.gather(1, ns.reshape(B, -1)).reshape(ns.shape)).sum(-1)  # (B, A)
    torch.testing.assert_close(_grad((info["final_obs"] * v).sum(), a), expected_a)
    # Position: every cell j under the action taken, averaged over its outcomes.
    taken = torch.arange(B) % 4
    ns_j = mdp.next_state[:, taken].permute(1, 0, 2)  # (B, S, O)
    p_j = mdp.prob[:, taken].permute(1, 0, 2)  # (B, S, O)
    S = mdp.num_states
    expected_pos = (p_j * v.gather(1, ns_j.reshape(B, -1)).reshape(B, S, -1)).sum(-1)  # (B, S)
    torch.testing.assert_close(_grad((info["final_obs"] * v).sum(), pos), expected_pos)


def test_a_step_that_does_not_observe_moves_the_envs_alike():
    """observe=False (a caller that reads `state`): no observations, the same transitions,
    resets and draws, and `pos` is still the position when asked for."""
    envs = [BatchedGridWorld("FrozenLake-v1", 64, obs_mode="onehot", seed=2) for _ in range(2)]
    for env in envs:
        env.reset(seed=2)
    actions = torch.randint(4, (30, 64), generator=torch.Generator().manual_seed(0))
    ended = 0
    for a in actions:
        seen, blind = envs[0].step(a), envs[1].step(a, observe=False)
        assert blind[0] is None and blind[4]["final_obs"] is None
        for x, y in zip(seen[1:4], blind[1:4], strict=True):
            assert torch.equal(x, y)
        assert torch.equal(seen[4]["final_state"], blind[4]["final_state"])
        assert torch.equal(envs[0].state, envs[1].state) and torch.equal(seen[0], one_hot(envs[1].state, 16).float())
        ended += int(seen[4]["done"].sum())
    assert ended > 0  # resets happened on the way
    assert torch.equal(envs[1].pos, envs[0].pos)


def test_detach_cuts_the_graph():
    env = BatchedGridWorld(load_map(CROSS), 1, obs_mode="onehot")
    env.reset(options={"state": CENTRE})[0]
    a1 = one_hot(torch.tensor([UP]), 4).float().requires_grad_()
    env.step(a1)
    assert env.pos.requires_grad
    env.detach()
    assert not env.pos.requires_grad
    a2 = one_hot(torch.tensor([RIGHT]), 4).float().requires_grad_()
    _, r2, *_ = env.step(a2)
    assert torch.autograd.grad(r2.sum(), a1, allow_unused=True) == (None,)
    assert _grad(r2.sum(), a2).abs().sum() > 0  # the current step still has its gradient


def test_no_gradient_across_an_episode_boundary():
    env = BatchedGridWorld(load_map(CROSS), 2, obs_mode="onehot")
    env.reset(options={"state": torch.tensor([7, CENTRE])})[0]
    a = one_hot(torch.tensor([RIGHT, RIGHT]), 4).float().requires_grad_()
    obs, _, terminated, _, info = env.step(a)  # row 0 enters the goal and restarts
    assert terminated.tolist() == [True, False]
    g = _grad((obs * torch.arange(25.0)).sum(), a)
    assert (g[0] == 0).all() and (g[1] != 0).any()
    assert (_grad((info["final_obs"] * torch.arange(25.0)).sum(), a)[0] != 0).any()


@pytest.mark.parametrize("device", DEVICES)
def test_image_observation_is_differentiable_in_the_agent_channel(device):
    mdp = load_map(CROSS)
    env = BatchedGridWorld(mdp, 1, obs_mode="image", device=device)
    env.reset(options={"state": CENTRE})[0]
    a = one_hot(torch.tensor([LEFT]), 4).float().to(device).requires_grad_()
    obs, *_ = env.step(a)
    assert tuple(obs.shape) == (1, 4, 5, 5)
    v = torch.randn(5, 5, generator=torch.Generator().manual_seed(3))
    ns = mdp.next_state[CENTRE, :, 0]
    torch.testing.assert_close(_grad((obs[0, 3] * v.to(device)).sum(), a).cpu(), v.flatten()[ns][None])
    assert (_grad(obs[:, :3].sum(), a) == 0).all()  # the map planes are constants


@pytest.mark.parametrize("world", ["four_rooms", "FrozenLake-v1"])
def test_exploring_starts_are_uniform_over_the_reachable_cells(world):
    # Every env starts at an exploring start: the starts cover exactly the reachable cells, each
    # about equally often (chi-square at P_MIN, fixed seed).
    env = BatchedGridWorld(world, 40_000, seed=3, explore_starts=1.0)
    env.reset()
    assert bool(env.explored.all())
    counts = torch.bincount(env.state, minlength=env.S)  # (S,)
    reachable = env.reachable[0]
    assert counts[~reachable].sum() == 0, "an exploring start outside the reachable cells"
    observed = counts[reachable].double().numpy()
    assert stats.chisquare(observed).pvalue > P_MIN, observed
