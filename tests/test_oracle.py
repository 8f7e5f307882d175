"""envs.oracle: value iteration and exact (differentiable) policy evaluation, checked against
closed forms, an independent plain-Python Bellman iteration on gymnasium's own `P`, Monte-Carlo
returns of GridWorldEnv, and finite differences."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs import GridWorldEnv, expected_return, from_gymnasium, load_map, policy_values, value_iteration


def _open_room(height: int, width: int, start: tuple[int, int], goal: tuple[int, int]) -> str:
    rows = [["#"] * (width + 2)] + [["#"] + ["."] * width + ["#"] for _ in range(height)]
    rows += [["#"] * (width + 2)]
    rows[start[0] + 1][start[1] + 1] = "S"
    rows[goal[0] + 1][goal[1] + 1] = "G"
    return "\n".join("".join(r) for r in rows)


@pytest.mark.parametrize(
    ("size", "start", "goal"),
    [((5, 6), (0, 0), (4, 5)), ((4, 4), (3, 0), (0, 2)), ((1, 7), (0, 6), (0, 1)), ((3, 3), (1, 1), (1, 2))],
)
def test_open_room_optimum_is_gamma_to_the_distance(size, start, goal):
    gamma = 0.9
    mdp = load_map(_open_room(*size, start, goal))
    result = value_iteration(mdp, gamma)
    W = size[1] + 2
    d = abs(start[0] - goal[0]) + abs(start[1] - goal[1])
    # Reward 1 on the d-th step, discounted by gamma^(d-1); step reward 0.
    assert result.optimal_return == pytest.approx(gamma ** (d - 1), abs=1e-9)
    # Every open cell's value follows the same rule with its own Manhattan distance.
    for r in range(size[0]):
        for c in range(size[1]):
            s = (r + 1) * W + c + 1
            dist = abs(r - goal[0]) + abs(c - goal[1])
            assert float(result.values[s]) == pytest.approx(0.0 if dist == 0 else gamma ** (dist - 1), abs=1e-9)
    # The greedy policy walks straight there in GridWorldEnv.
    env = GridWorldEnv(mdp)
    state, _ = env.reset(seed=0)
    for t in range(1, d + 1):
        state, reward, terminated, _, info = env.step(int(result.policy[state]))
        assert terminated == (t == d)
    assert reward == 1.0 and info["success"]


def _reference_frozenlake_values(P: dict, gamma: float, tol: float = 1e-13, steps: int | None = None) -> list[float]:
    """Bellman optimality iteration written out on gymnasium's P in plain Python floats; with
    `steps`, exactly that many backups (the optimum of episodes cut after `steps` steps)."""
    V = [0.0] * len(P)
    done_steps = 0
    while True:
        new = [
            max(sum(p * (r + (0.0 if done else gamma * V[ns])) for p, ns, r, done in P[s][a]) for a in P[s]) for s in P
        ]
        delta = max(abs(x - y) for x, y in zip(new, V, strict=True))
        V = new
        done_steps += 1
        if (steps is None and delta < tol) or done_steps == steps:
            return V


@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_slippery_frozenlake_matches_an_independent_solution(gamma):
    P = gym.make("FrozenLake-v1", is_slippery=True).unwrapped.P
    reference = _reference_frozenlake_values(P, gamma)
    result = value_iteration(from_gymnasium("FrozenLake-v1", is_slippery=True), gamma)
    # The imported probabilities are float32 (1/3 to ~3e-8), hence the tolerance.
    np.testing.assert_allclose(result.values.numpy(), reference, atol=2e-6)
    assert result.optimal_return == pytest.approx(reference[0], abs=2e-6)
    assert result.values.dtype == torch.float64
    assert result.values[[5, 7, 11, 12, 15]].abs().max() == 0  # holes and goal end the episode


def test_time_limited_optimum_matches_an_independent_solution():
    # 8x8 slippery: the time limit (100 steps, as gymnasium's FrozenLake-v1 with map_name 8x8)
    # binds, so the time-limited optimum is clearly below the untruncated one.
    P = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=True).unwrapped.P
    mdp = from_gymnasium("FrozenLake-v1", map_name="8x8", is_slippery=True)
    assert mdp.max_episode_steps == 100
    limited = value_iteration(mdp, 0.99, horizon=100)
    np.testing.assert_allclose(limited.values.numpy(), _reference_frozenlake_values(P, 0.99, steps=100), atol=2e-6)
    assert limited.optimal_return < 0.9 * value_iteration(mdp, 0.99).optimal_return
    # A limit no shorter than the longest optimal path changes nothing on a deterministic room,
    # and one shorter than the path to the goal leaves nothing to collect.
    room = load_map(_open_room(4, 5, (0, 0), (3, 4)))  # goal 7 steps away
    assert value_iteration(room, 0.9, horizon=7).optimal_return == pytest.approx(0.9**6, abs=1e-12)
    assert value_iteration(room, 0.9, horizon=6).optimal_return == 0.0
    assert value_iteration(room, 1.0, horizon=50).optimal_return == pytest.approx(1.0)
    with pytest.raises(ValueError, match="horizon=0"):
        value_iteration(room, 0.9, horizon=0)


def test_value_iteration_rejects_gamma_one_and_leaves_the_mdp_alone():
    mdp = load_map("empty")
    with pytest.raises(ValueError, match="gamma=1.0"):
        value_iteration(mdp, 1.0)
    value_iteration(mdp, 0.9)
    assert mdp.prob.dtype == torch.float32 and mdp.reward.dtype == torch.float32


def test_policy_values_of_the_greedy_policy_are_the_optimal_values():
    mdp = load_map("lava_gap", slip=0.2, step_reward=-0.01)
    result = value_iteration(mdp, 0.95)
    greedy = torch.nn.functional.one_hot(result.policy, 4).double()
    torch.testing.assert_close(policy_values(mdp, greedy, 0.95), result.values, atol=1e-8, rtol=0)


# A small slippery room with lava and two starts: uniform-random episodes are short.
SMALL_ROOM = """
######
#S..L#
#...S#
#L..G#
######
"""


def test_uniform_policy_matches_monte_carlo():
    gamma, episodes, horizon = 0.95, 4000, 300
    mdp = load_map(SMALL_ROOM, slip=0.2, step_reward=-0.05, hazard_reward=-1.0)
    uniform = torch.full((mdp.num_states, 4), 0.25, dtype=torch.float64)
    exact = float(expected_return(mdp, uniform, gamma))
    env = GridWorldEnv(mdp)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    returns = np.empty(episodes)
    for i in range(episodes):
        env.reset()
        g, discount = 0.0, 1.0
        for _ in range(horizon):  # the return left after 300 steps is below 0.95**300 ~ 2e-7
            _, r, terminated, _, _ = env.step(int(rng.integers(4)))
            g += discount * r
            discount *= gamma
            if terminated:
                break
        returns[i] = g
    se = returns.std(ddof=1) / np.sqrt(episodes)
    # 4 standard errors: a correct oracle fails with probability ~6e-5 (CLT); the seed is fixed.
    # se < 0.02 keeps the test sharp enough to catch e.g. a dropped start state or wrong discount.
    assert se < 0.02
    assert abs(returns.mean() - exact) < 4 * se
    # Per-state values, too, from the two starts separately.
    values = policy_values(mdp, uniform, gamma)
    assert exact == pytest.approx(float(0.5 * values[7] + 0.5 * values[16]))


def test_expected_return_is_differentiable_and_matches_a_finite_difference():
    gamma = 0.9
    mdp = load_map(SMALL_ROOM, slip=0.2, step_reward=-0.05)
    theta = torch.randn(mdp.num_states, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    theta.requires_grad_()
    J = expected_return(mdp, torch.softmax(theta, -1), gamma)
    (grad,) = torch.autograd.grad(J, theta)
    eps = 1e-6
    checked = 0
    for s in (7, 8, 9, 13, 14, 16, 19, 20):  # live cells; central differences in float64
        for a in range(4):
            bump = torch.zeros_like(theta)
            bump[s, a] = eps
            with torch.no_grad():
                plus = expected_return(mdp, torch.softmax(theta + bump, -1), gamma)
                minus = expected_return(mdp, torch.softmax(theta - bump, -1), gamma)
            assert float(grad[s, a]) == pytest.approx(float(plus - minus) / (2 * eps), abs=1e-8)
            checked += abs(float(grad[s, a])) > 1e-4
    assert checked > 16  # most entries carry a real gradient
    # Walls and terminal cells never act: their policy rows get no gradient.
    assert grad[0].abs().max() == 0 and grad[10].abs().max() == 0


def _backward_metrics(mdp, policy: torch.Tensor, gamma: float, horizon: int) -> dict[str, float]:
    """Return, success and length by plain backward induction over every cell (what
    `policy_metrics` computed before it went forward), as a reference."""
    pi, p = policy.double(), mdp.prob.double()
    live = (~mdp.done).double()
    v = {k: torch.zeros(mdp.num_states, dtype=torch.float64) for k in ("return", "success", "length")}
    pays = {"return": mdp.reward.double(), "success": mdp.success.double(), "length": torch.ones_like(p)}
    for _ in range(horizon):
        v = {
            k: (pi * (p * (pays[k] + (gamma if k == "return" else 1.0) * live * v[k][mdp.next_state])).sum(-1)).sum(-1)
            for k in v
        }
    return {k: float((mdp.start.double() * x).sum()) for k, x in v.items()}


@pytest.mark.parametrize(
    ("spec", "options"),
    [
        ("four_rooms", {}),
        ("four_rooms", {"slip": 0.2}),
        ("maze", {"step_reward": -0.1}),
        ("cliff", {"hazard_reward": -1.0}),
    ],
)
@pytest.mark.parametrize("kind", ["softmax", "greedy"])
@pytest.mark.parametrize("horizon", [1, 9, None])
def test_policy_metrics_going_forward_equal_backward_induction(spec, options, kind, horizon):
    from envs.oracle import policy_metrics

    mdp = load_map(spec, **options)
    gen = torch.Generator().manual_seed(len(spec) + 7 * len(options))
    logits = torch.randn(mdp.num_states, 4, generator=gen, dtype=torch.float64) * 3
    policy = logits.softmax(-1) if kind == "softmax" else torch.nn.functional.one_hot(logits.argmax(-1), 4).double()
    T = horizon or mdp.max_episode_steps
    for gamma in (0.9, 1.0):
        got = policy_metrics(mdp, policy, gamma, T)
        want = _backward_metrics(mdp, policy, gamma, T)
        for k in want:
            # The tables' probabilities are float32: a row sums to 1 within about 1e-7.
            assert float(got[k]) == pytest.approx(want[k], rel=1e-6, abs=1e-9), (k, gamma)


def test_a_policy_caught_in_a_loop_is_summed_to_the_time_limit_in_closed_form():
    """Greedy policies walking into a wall (period 1) or between two cells (period 2) replay the
    same steps until the time limit; a huge limit costs nothing, and the sums are the closed forms."""
    from envs.oracle import policy_metrics

    mdp = load_map("#####\n#S..#\n#..G#\n#####", step_reward=-1.0)
    S, gamma, T = mdp.num_states, 0.99, 10**9
    into_wall = torch.zeros(S, 4, dtype=torch.float64)
    into_wall[:, 0] = 1.0  # up: from the start, straight into the wall, forever
    m = policy_metrics(mdp, into_wall, gamma, T)
    assert float(m["length"]) == T and float(m["success"]) == 0.0
    assert float(m["return"]) == pytest.approx(-(1 - gamma**T) / (1 - gamma), rel=1e-12)
    # Right then left between the start (row 1, col 1) and its neighbour: period 2, still -1 a step.
    to_and_fro = torch.zeros(S, 4, dtype=torch.float64)
    to_and_fro[1 * 5 + 1, 3] = 1.0
    to_and_fro[1 * 5 + 2, 2] = 1.0
    for s in range(S):
        if not to_and_fro[s].any():
            to_and_fro[s, 0] = 1.0
    m = policy_metrics(mdp, to_and_fro, gamma, 1001)
    assert float(m["length"]) == 1001 and float(m["success"]) == 0.0
    assert float(m["return"]) == pytest.approx(-(1 - gamma**1001) / (1 - gamma), rel=1e-12)
    assert float(m["return"]) == pytest.approx(_backward_metrics(mdp, to_and_fro, gamma, 1001)["return"], rel=1e-12)
