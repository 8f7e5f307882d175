"""envs.toy_text: importing gymnasium's FrozenLake / CliffWalking / Taxi, checked against gymnasium.

Every outcome of every (state, action) must carry gymnasium's probability, next state, reward and
termination. Deterministic variants: the same action sequence in gymnasium's env, in
`GridWorldEnv(mdp)` and in `BatchedGridWorld(mdp, B)` must give identical trajectories. Random
variants (slippery lakes and cliffs, rainy Taxi): our envs' empirical transition frequencies must
match gymnasium's `P` (chi-squared, fixed seeds).
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

LAKE_DESC = "SFFH/FHFF/FFFH/HFFG"  # a custom FrozenLake `desc`, rows joined by `/`
VARIANTS = [
    # id, kwargs, states, actions, outcomes
    ("FrozenLake-v1", {"is_slippery": False}, 16, 4, 1),
    ("FrozenLake-v1", {"is_slippery": True}, 16, 4, 3),
    ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": False}, 64, 4, 1),
    ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": True}, 64, 4, 3),
    ("FrozenLake-v1", {"desc": LAKE_DESC, "is_slippery": True}, 16, 4, 3),
    ("CliffWalking-v1", {}, 48, 4, 1),
    ("CliffWalking-v1", {"is_slippery": True}, 48, 4, 3),
    ("Taxi-v4", {}, 500, 6, 1),
    ("Taxi-v4", {"is_rainy": True}, 500, 6, 3),
]


def _gym(env_id: str, **kwargs):
    """gymnasium's env, with a `desc` string split into rows as `from_gymnasium` does."""
    if isinstance(kwargs.get("desc"), str):
        kwargs["desc"] = kwargs["desc"].split("/")
    return gym.make(env_id, **kwargs)


def _gym_law(P: dict, s: int, a: int) -> dict[int, float]:
    """gymnasium's next-state distribution for (s, a), summed over duplicate outcomes."""
    law: dict[int, float] = defaultdict(float)
    for p, ns, _, _ in P[s][a]:
        law[int(ns)] += p
    return dict(law)


@pytest.mark.parametrize(("env_id", "kwargs", "S", "A", "outcomes"), VARIANTS)
def test_import_matches_gymnasium_tables(env_id, kwargs, S, A, outcomes):
    gym_env = _gym(env_id, **kwargs)
    P = gym_env.unwrapped.P
    mdp = from_gymnasium(env_id, **kwargs)
    assert (mdp.num_states, mdp.num_actions, mdp.num_outcomes) == (S, A, outcomes)
    torch.testing.assert_close(mdp.prob.sum(-1), torch.ones(S, A))
    for s in range(S):
        for a in range(A):
            # Each (next state, reward, done) of gymnasium's list has the same total probability here.
            theirs: dict[tuple, float] = defaultdict(float)
            for p, ns, r, done in P[s][a]:
                theirs[(int(ns), float(r), bool(done))] += p
            ours: dict[tuple, float] = defaultdict(float)
            for o in range(outcomes):
                if mdp.prob[s, a, o] > 0:
                    key = (int(mdp.next_state[s, a, o]), float(mdp.reward[s, a, o]), bool(mdp.done[s, a, o]))
                    ours[key] += float(mdp.prob[s, a, o])
            assert ours.keys() == theirs.keys(), (s, a)
            assert all(abs(ours[k] - theirs[k]) < 1e-6 for k in theirs), (s, a)
    start = np.asarray(gym_env.unwrapped.initial_state_distrib)
    np.testing.assert_allclose(mdp.start.numpy(), start, atol=1e-7)


def test_success_is_each_imports_goal():
    lake = from_gymnasium("FrozenLake-v1", desc=LAKE_DESC, is_slippery=False)
    assert lake.success_rule == "entering the goal cell"
    entered_goal = lake.next_state == 15
    assert torch.equal(lake.success, lake.done & entered_goal)
    assert bool(lake.success[14, 2, 0]) and not bool(lake.success[2, 2, 0])  # right into G; right into H
    cliff = from_gymnasium("CliffWalking-v1", is_slippery=True)
    assert torch.equal(cliff.success, cliff.done & (cliff.next_state == 47))
    # Taxi ends on a drop-off at the destination, whatever state it leads to: that is its success.
    taxi = from_gymnasium("Taxi-v4")
    assert torch.equal(taxi.success, taxi.done)
    assert bool(taxi.done[:, 5].any()) and not bool(taxi.done[:, :5].any())  # only the drop-off action ends
    assert float(taxi.reward[taxi.success].min()) == 20.0
    assert "highest ending reward (20)" in taxi.success_rule
    # States an episode can be in: the passenger is never at its destination before the drop-off.
    assert int(taxi.reachable().sum()) == 400


def test_action_meaning_is_the_imported_envs():
    lake = from_gymnasium("FrozenLake-v1", is_slippery=False)
    assert lake.action_names == ("left", "down", "right", "up")
    assert lake.next_state[0, :, 0].tolist() == [0, 4, 1, 0]  # left: edge, down, right, up: edge
    cliff = from_gymnasium("CliffWalking-v1")
    assert cliff.action_names == ("up", "right", "down", "left")
    assert cliff.next_state[36, :, 0].tolist() == [24, 36, 36, 36]  # right: into the cliff, back
    assert float(cliff.reward[36, 1, 0]) == -100 and not cliff.done[36, 1, 0]  # v1: back to the start
    assert float(cliff.reward[35, 2, 0]) == -1 and bool(cliff.done[35, 2, 0]) and bool(cliff.success[35, 2, 0])
    assert cliff.layout.hazards[3, 1:11].all()  # drawn as lava, but not ending (v1 semantics)
    assert from_gymnasium("Taxi-v4").action_names[4:] == ("pickup", "dropoff")


def test_time_limits_and_instances():
    assert from_gymnasium("FrozenLake-v1").max_episode_steps == 100
    assert from_gymnasium("FrozenLake8x8-v1").max_episode_steps == 200
    assert from_gymnasium("CliffWalking-v1").max_episode_steps == 4 * 48  # no limit registered
    by_instance = from_gymnasium(gym.make("FrozenLake-v1", is_slippery=False))
    assert torch.equal(by_instance.next_state, from_gymnasium("FrozenLake-v1", is_slippery=False).next_state)
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
    # Unknown keywords and bad values: one line naming what the env accepts.
    with pytest.raises(ValueError, match="takes no keyword argument foo; it accepts desc, map_name, is_slippery"):
        from_gymnasium("FrozenLake-v1", foo="bar")
    with pytest.raises(ValueError, match=r"cannot make FrozenLake-v1 .*KeyError: '9x9'.*accepts desc, map_name"):
        from_gymnasium("FrozenLake-v1", map_name="9x9")
    with pytest.raises(ValueError, match="fickle_passenger=True can't be imported"):
        from_gymnasium("Taxi-v4", fickle_passenger=True)
    # A switch or number given as a word would reach the env as a truthy string: refused.
    with pytest.raises(ValueError, match=r"CliffWalking-v1 keyword is_slippery='maybe' must be true or false"):
        from_gymnasium("CliffWalking-v1", is_slippery="maybe")
    with pytest.raises(ValueError, match=r"Taxi-v4 keyword fickle_passenger='yes' must be true or false"):
        from_gymnasium("Taxi-v4", fickle_passenger="yes")
    with pytest.raises(ValueError, match=r"FrozenLake-v1 keyword success_rate='high' must be a number"):
        from_gymnasium("FrozenLake-v1", success_rate="high")
    with pytest.raises(ValueError, match=r"FrozenLake-v1 keyword success_rate=True must be a number"):
        from_gymnasium("FrozenLake-v1", success_rate=True)
    assert from_gymnasium("FrozenLake-v1", success_rate=1).num_states == 16  # an int is a number


# --------------------------------------------------------------------------- parity, deterministic

DETERMINISTIC = [
    # id, kwargs, action probabilities (biased towards the goal so some episodes reach it), steps
    ("FrozenLake-v1", {"is_slippery": False}, [0.15, 0.35, 0.35, 0.15], 2500),
    ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": False}, [0.1, 0.4, 0.4, 0.1], 2500),
    ("FrozenLake-v1", {"desc": LAKE_DESC, "is_slippery": False}, [0.1, 0.4, 0.4, 0.1], 2500),
    ("CliffWalking-v1", {}, [0.3, 0.35, 0.2, 0.15], 2500),
    ("Taxi-v4", {}, [1 / 6] * 6, 12000),
]


@pytest.mark.parametrize(("env_id", "kwargs", "p_action", "steps"), DETERMINISTIC)
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("one_hot", [False, True], ids=["int", "onehot"])
def test_deterministic_parity_with_gymnasium(env_id, kwargs, p_action, steps, B, one_hot):
    mdp = from_gymnasium(env_id, **kwargs)
    T = mdp.max_episode_steps
    A = mdp.num_actions
    theirs = TimeLimit(_gym(env_id, **kwargs).unwrapped, T)
    ours = TimeLimit(GridWorldEnv(mdp), T)
    batched = BatchedGridWorld(mdp, B, obs_mode="index", seed=0)
    actions = np.random.default_rng(1234).choice(A, size=steps, p=p_action)

    # Every episode starts where gymnasium's does (Taxi draws its start): ours are put there.
    g_obs, _ = theirs.reset(seed=0)
    o_obs, _ = ours.reset(options={"state": g_obs})
    b_obs = batched.reset(options={"state": g_obs})[0]
    assert o_obs == g_obs and b_obs.tolist() == [g_obs] * B
    episodes = successes = terminations = truncations = penalties = 0
    for a in actions.tolist():
        g_obs, g_r, g_term, g_trunc, _ = theirs.step(a)
        o_obs, o_r, o_term, o_trunc, o_info = ours.step(a)
        b_action = torch.full((B,), a)
        if one_hot:
            b_action = torch.nn.functional.one_hot(b_action, A).float()
        b_obs, b_r, b_term, b_trunc, info = batched.step(b_action)
        assert (o_obs, o_r, o_term, o_trunc) == (g_obs, float(g_r), g_term, g_trunc)
        # The batched env resets in the same step: the finished episode's last obs is final_obs.
        assert info["final_obs"].tolist() == [g_obs] * B
        assert b_r.tolist() == [float(g_r)] * B
        assert b_term.tolist() == [g_term] * B
        assert info["done"].tolist() == [g_term or g_trunc] * B
        # TimeLimit also flags truncation when the last step terminates; we don't (terminated wins).
        assert b_trunc.tolist() == [g_trunc and not g_term] * B
        penalties += g_r <= -10  # a fall off the cliff, an illegal pick-up or drop-off
        if g_term or g_trunc:
            episodes += 1
            terminations += g_term
            truncations += g_trunc and not g_term
            successes += o_info["success"]
            assert info["success"].tolist() == [o_info["success"]] * B
            g_obs, _ = theirs.reset()
            o_obs, _ = ours.reset(options={"state": g_obs})
            b_obs = batched.reset(options={"state": g_obs})[0]
        else:
            assert b_obs.tolist() == [g_obs] * B
    # The sequence must have exercised what it checks.
    assert episodes >= 5 and terminations >= 1
    if env_id == "CliffWalking-v1":
        assert penalties >= 5 and truncations >= 1
    else:
        assert successes >= 1
    if env_id == "Taxi-v4":
        assert penalties >= 5 and truncations >= 1


# --------------------------------------------------------------------------- slippery, statistical


def _chi2_pvalue(samples: np.ndarray, law: dict[int, float]) -> float:
    states = sorted(law)
    assert set(np.unique(samples).tolist()) <= set(states), "reached a state P says is impossible"
    observed = np.array([(samples == s).sum() for s in states])
    expected = np.array([law[s] for s in states]) * len(samples)
    if len(states) == 1:
        return 1.0 if observed[0] == len(samples) else 0.0
    return float(stats.chisquare(observed, expected).pvalue)


# (env, kwargs, state, action): FrozenLake's interior, edge, corner and next-to-a-hole cells (next
# states merge where a slip runs into the edge), a slippery cliff edge, a rainy Taxi move.
SLIPPERY_PAIRS = [
    ("FrozenLake-v1", {"map_name": "4x4"}, 0, 1),
    ("FrozenLake-v1", {"map_name": "4x4"}, 6, 2),
    ("FrozenLake-v1", {"map_name": "4x4"}, 14, 2),
    ("FrozenLake-v1", {"map_name": "4x4"}, 9, 1),
    ("FrozenLake-v1", {"map_name": "8x8"}, 27, 3),
    ("CliffWalking-v1", {"is_slippery": True}, 25, 2),
    ("Taxi-v4", {"is_rainy": True}, 250, 0),
]


@pytest.mark.parametrize(("env_id", "kwargs", "s", "a"), SLIPPERY_PAIRS)
def test_slippery_grid_env_frequencies_match_gymnasium(env_id, kwargs, s, a):
    law = _gym_law(_gym(env_id, **kwargs).unwrapped.P, s, a)
    assert len(law) >= 2  # a genuinely random transition
    env = GridWorldEnv(env_id, env_kwargs=kwargs)
    env.reset(seed=100 + s)
    samples = []
    for _ in range(N_SAMPLES):
        env.reset(options={"state": s})
        samples.append(env.step(a)[0])
    assert _chi2_pvalue(np.array(samples), law) > P_MIN


@pytest.mark.parametrize("one_hot", [False, True], ids=["int", "onehot"])
@pytest.mark.parametrize(("env_id", "kwargs", "s", "a"), SLIPPERY_PAIRS)
def test_slippery_batched_frequencies_match_gymnasium(env_id, kwargs, s, a, one_hot):
    law = _gym_law(_gym(env_id, **kwargs).unwrapped.P, s, a)
    env = BatchedGridWorld(env_id, N_SAMPLES, obs_mode="index", seed=200 + s, env_kwargs=kwargs)
    env.reset(options={"state": s})[0]
    action = torch.full((N_SAMPLES,), a)
    if one_hot:
        action = torch.nn.functional.one_hot(action, env.A).float()
    _, _, _, _, info = env.step(action)
    assert _chi2_pvalue(info["final_obs"].numpy(), law) > P_MIN


def test_chi2_check_has_power():
    # The same samples tested against a wrong law (slips as likely as the intended move is
    # right; here: intended move twice as likely) must be rejected, or the test above is blind.
    P = gym.make("FrozenLake-v1").unwrapped.P
    law = _gym_law(P, 6, 2)
    env = BatchedGridWorld("FrozenLake-v1", N_SAMPLES, obs_mode="index", seed=3)
    env.reset(options={"state": 6})[0]
    _, _, _, _, info = env.step(torch.full((N_SAMPLES,), 2))
    wrong = {k: (2 * v if k == 7 else v) for k, v in law.items()}
    total = sum(wrong.values())
    wrong = {k: v / total for k, v in wrong.items()}
    assert _chi2_pvalue(info["final_obs"].numpy(), wrong) < P_MIN
