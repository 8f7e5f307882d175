"""envs.toy_text: importing gymnasium's FrozenLake / CliffWalking, checked against gymnasium itself.

Deterministic variants: the same action sequence in gymnasium's env, in `GridWorldEnv(mdp)` and in
`BatchedGridWorld(mdp, B)` must give identical trajectories. Slippery FrozenLake: our envs'
empirical transition frequencies must match gymnasium's `P` (chi-squared, fixed seeds).
"""

from __future__ import annotations

from collections import defaultdict

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit
from scipy import stats

from envs import BatchedGridWorld, GridWorldEnv, from_gymnasium, make_world

# A p-value threshold of 1e-3 rejects a correct sampler in 0.1% of seeds; the seeds are fixed, so
# the outcome is deterministic, and a wrong transition law at these sample sizes gives p ~ 0.
P_MIN = 1e-3
N_SAMPLES = 3000

VARIANTS = [
    ("FrozenLake-v1", {"is_slippery": False}, 16, 1),
    ("FrozenLake-v1", {"is_slippery": True}, 16, 3),
    ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": False}, 64, 1),
    ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": True}, 64, 3),
    ("CliffWalking-v1", {}, 48, 1),
]


def _gym_law(P: dict, s: int, a: int) -> dict[int, float]:
    """gymnasium's next-state distribution for (s, a), summed over duplicate outcomes."""
    law: dict[int, float] = defaultdict(float)
    for p, ns, _, _ in P[s][a]:
        law[int(ns)] += p
    return dict(law)


@pytest.mark.parametrize(("env_id", "kwargs", "S", "outcomes"), VARIANTS)
def test_import_matches_gymnasium_tables(env_id, kwargs, S, outcomes):
    gym_env = gym.make(env_id, **kwargs)
    P = gym_env.unwrapped.P
    mdp = from_gymnasium(env_id, **kwargs)
    assert (mdp.num_states, mdp.num_actions, mdp.num_outcomes) == (S, 4, outcomes)
    torch.testing.assert_close(mdp.prob.sum(-1), torch.ones(S, 4))
    terminal = {int(ns) for s in P for a in P[s] for _, ns, _, done in P[s][a] if done}
    assert set(torch.nonzero(mdp.terminal).flatten().tolist()) == terminal
    for s in range(S):
        if s in terminal:  # absorbing, zero reward; the envs never step from here
            assert (mdp.next_state[s] == s).all() and (mdp.reward[s] == 0).all()
            continue
        for a in range(4):
            ours: dict[int, float] = defaultdict(float)
            for o in range(outcomes):
                ours[int(mdp.next_state[s, a, o])] += float(mdp.prob[s, a, o])
            law = _gym_law(P, s, a)
            assert ours.keys() == law.keys()
            assert all(abs(ours[k] - law[k]) < 1e-6 for k in law)
            for _, ns, r, _ in P[s][a]:  # every outcome's reward is the table's
                hits = [
                    o
                    for o in range(outcomes)
                    if int(mdp.next_state[s, a, o]) == ns and mdp.prob[s, a, o] > 0
                ]
                assert hits and all(float(mdp.reward[s, a, o]) == r for o in hits)
    start = np.asarray(gym_env.unwrapped.initial_state_distrib)
    np.testing.assert_allclose(mdp.start.numpy(), start)


def test_action_meaning_is_the_imported_envs():
    lake = from_gymnasium("FrozenLake-v1", is_slippery=False)
    assert lake.action_names == ("left", "down", "right", "up")
    assert lake.next_state[0, :, 0].tolist() == [0, 4, 1, 0]  # left: edge, down, right, up: edge
    assert lake.goal.tolist() == [s == 15 for s in range(16)]
    cliff = from_gymnasium("CliffWalking-v1")
    assert cliff.action_names == ("up", "right", "down", "left")
    assert cliff.next_state[36, :, 0].tolist() == [24, 36, 36, 36]  # right: into the cliff, back
    assert float(cliff.reward[36, 1, 0]) == -100 and not cliff.terminal[36]
    assert float(cliff.reward[35, 2, 0]) == -1 and bool(cliff.terminal[47]) and bool(cliff.goal[47])
    assert cliff.layout.hazards[3, 1:11].all()  # drawn as lava, but not terminal (v1 semantics)


def test_time_limits_and_instances():
    assert from_gymnasium("FrozenLake-v1").max_episode_steps == 100
    assert from_gymnasium("FrozenLake8x8-v1").max_episode_steps == 200
    assert from_gymnasium("CliffWalking-v1").max_episode_steps == 4 * 48  # no limit registered
    by_instance = from_gymnasium(gym.make("FrozenLake-v1", is_slippery=False))
    assert torch.equal(
        by_instance.next_state, from_gymnasium("FrozenLake-v1", is_slippery=False).next_state
    )
    assert make_world("FrozenLake-v1", env_kwargs={"map_name": "8x8"}).num_states == 64


def test_import_errors():
    with pytest.raises(ValueError, match="no transition table `P`"):
        from_gymnasium("CartPole-v1")
    with pytest.raises(ValueError, match="only apply when an env id is given"):
        from_gymnasium(gym.make("FrozenLake-v1"), is_slippery=False)
    with pytest.raises(ValueError, match="FrozenLake-v9"):
        from_gymnasium("FrozenLake-v9")
    with pytest.raises(ValueError, match="don't apply to FrozenLake-v1"):
        make_world("FrozenLake-v1", slip=0.1)


# --------------------------------------------------------------------------- parity, deterministic

DETERMINISTIC = [
    # id, kwargs, action probabilities (biased towards the goal so some episodes reach it)
    ("FrozenLake-v1", {"is_slippery": False}, [0.15, 0.35, 0.35, 0.15]),
    ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": False}, [0.1, 0.4, 0.4, 0.1]),
    ("CliffWalking-v1", {}, [0.3, 0.35, 0.2, 0.15]),
]


@pytest.mark.parametrize(("env_id", "kwargs", "p_action"), DETERMINISTIC)
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("one_hot", [False, True], ids=["int", "onehot"])
def test_deterministic_parity_with_gymnasium(env_id, kwargs, p_action, B, one_hot):
    mdp = from_gymnasium(env_id, **kwargs)
    T = mdp.max_episode_steps
    theirs = gym.make(env_id, max_episode_steps=T, **kwargs)
    ours = TimeLimit(GridWorldEnv(mdp), T)
    batched = BatchedGridWorld(mdp, B, obs_mode="index", seed=0)
    actions = np.random.default_rng(1234).choice(4, size=2500, p=p_action)

    g_obs, _ = theirs.reset(seed=0)
    o_obs, _ = ours.reset(seed=0)
    b_obs = batched.reset()
    assert g_obs == o_obs == {"FrozenLake-v1": 0, "CliffWalking-v1": 36}[env_id]
    assert b_obs.tolist() == [g_obs] * B
    episodes = successes = terminations = truncations = cliff_falls = 0
    for a in actions.tolist():
        g_obs, g_r, g_term, g_trunc, _ = theirs.step(a)
        o_obs, o_r, o_term, o_trunc, o_info = ours.step(a)
        b_action = torch.full((B,), a)
        if one_hot:
            b_action = torch.nn.functional.one_hot(b_action, 4).float()
        b_obs, b_r, b_term, b_trunc, info = batched.step(b_action)
        assert (o_obs, o_r, o_term, o_trunc) == (g_obs, float(g_r), g_term, g_trunc)
        # The batched env resets in the same step: the finished episode's last obs is final_obs.
        assert info["final_obs"].tolist() == [g_obs] * B
        assert b_r.tolist() == [float(g_r)] * B
        assert b_term.tolist() == [g_term] * B
        assert info["done"].tolist() == [g_term or g_trunc] * B
        # TimeLimit also flags truncation when the last step terminates; we don't (terminated wins).
        assert b_trunc.tolist() == [g_trunc and not g_term] * B
        cliff_falls += g_r == -100
        if g_term or g_trunc:
            episodes += 1
            terminations += g_term
            truncations += g_trunc and not g_term
            successes += o_info["success"]
            assert info["success"].tolist() == [o_info["success"]] * B
            g_obs, _ = theirs.reset()
            o_obs, _ = ours.reset()
            assert o_obs == g_obs
        assert b_obs.tolist() == [g_obs] * B
    # The sequence must have exercised what it checks.
    assert episodes >= 5 and terminations >= 1
    if env_id == "CliffWalking-v1":
        assert cliff_falls >= 5 and truncations >= 1
    else:
        assert successes >= 1


# --------------------------------------------------------------------------- slippery, statistical


def _chi2_pvalue(samples: np.ndarray, law: dict[int, float]) -> float:
    states = sorted(law)
    assert set(np.unique(samples).tolist()) <= set(states), "reached a state P says is impossible"
    observed = np.array([(samples == s).sum() for s in states])
    expected = np.array([law[s] for s in states]) * len(samples)
    if len(states) == 1:
        return 1.0 if observed[0] == len(samples) else 0.0
    return float(stats.chisquare(observed, expected).pvalue)


# (map, state, action): interior, edge, corner and next-to-a-hole cells; next states merge where
# a slip runs into the edge.
SLIPPERY_PAIRS = [("4x4", 0, 1), ("4x4", 6, 2), ("4x4", 14, 2), ("4x4", 9, 1), ("8x8", 27, 3)]


@pytest.mark.parametrize(("map_name", "s", "a"), SLIPPERY_PAIRS)
def test_slippery_grid_env_frequencies_match_gymnasium(map_name, s, a):
    law = _gym_law(gym.make("FrozenLake-v1", map_name=map_name).unwrapped.P, s, a)
    assert len(law) >= 2  # a genuinely random transition
    env = GridWorldEnv("FrozenLake-v1", env_kwargs={"map_name": map_name})
    env.reset(seed=100 + s)
    samples = []
    for _ in range(N_SAMPLES):
        env.reset(options={"state": s})
        samples.append(env.step(a)[0])
    assert _chi2_pvalue(np.array(samples), law) > P_MIN


@pytest.mark.parametrize("one_hot", [False, True], ids=["int", "onehot"])
@pytest.mark.parametrize(("map_name", "s", "a"), SLIPPERY_PAIRS)
def test_slippery_batched_frequencies_match_gymnasium(map_name, s, a, one_hot):
    law = _gym_law(gym.make("FrozenLake-v1", map_name=map_name).unwrapped.P, s, a)
    env = BatchedGridWorld(
        "FrozenLake-v1",
        N_SAMPLES,
        obs_mode="index",
        seed=200 + s,
        env_kwargs={"map_name": map_name},
    )
    env.reset(state=s)
    action = torch.full((N_SAMPLES,), a)
    if one_hot:
        action = torch.nn.functional.one_hot(action, 4).float()
    _, _, _, _, info = env.step(action)
    assert _chi2_pvalue(info["final_obs"].numpy(), law) > P_MIN


def test_chi2_check_has_power():
    # The same samples tested against a wrong law (slips as likely as the intended move is
    # right; here: intended move twice as likely) must be rejected, or the test above is blind.
    P = gym.make("FrozenLake-v1").unwrapped.P
    law = _gym_law(P, 6, 2)
    env = BatchedGridWorld("FrozenLake-v1", N_SAMPLES, obs_mode="index", seed=3)
    env.reset(state=6)
    _, _, _, _, info = env.step(torch.full((N_SAMPLES,), 2))
    wrong = {k: (2 * v if k == 7 else v) for k, v in law.items()}
    total = sum(wrong.values())
    wrong = {k: v / total for k, v in wrong.items()}
    assert _chi2_pvalue(info["final_obs"].numpy(), wrong) < P_MIN
