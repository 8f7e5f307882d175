"""envs.grid_env: the gymnasium env — API conformance, spaces, rendering, time limits, actions."""

from __future__ import annotations

import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import TimeLimit
from scipy import stats

import envs
from envs import REGISTERED_IDS, GridWorldEnv, load_map
from envs.render import CELL, COLORS

# See tests/test_toy_text.py: fixed seeds, a correct sampler fails at 1e-3 in 0.1% of seeds.
P_MIN = 1e-3


def _check_env_silently(env: gym.Env) -> None:
    """gymnasium's checker, with any warning it emits turned into a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)


@pytest.mark.parametrize("render_mode", ["ansi", "rgb_array"])
@pytest.mark.parametrize("env_id", REGISTERED_IDS)
def test_check_env_is_clean_for_registered_ids(env_id, render_mode):
    _check_env_silently(gym.make(env_id, render_mode=render_mode).unwrapped)


@pytest.mark.parametrize("obs_mode", ["index", "onehot", "image"])
@pytest.mark.parametrize(
    ("world", "kwargs"),
    [("four_rooms", {"slip": 0.2}), ("FrozenLake-v1", {"env_kwargs": {"is_slippery": True}}), ("CliffWalking-v1", {})],
)
def test_check_env_is_clean_for_obs_modes(world, kwargs, obs_mode):
    # Through gym.make so the env has a spec (check_env warns that it cannot re-make one without).
    env = gym.make("GumbelGrid/Empty-v0", world=world, obs_mode=obs_mode, render_mode="rgb_array", **kwargs)
    assert env.unwrapped.obs_mode == obs_mode
    assert env.unwrapped.mdp.name == world.split("-")[0]  # the override took effect
    _check_env_silently(env.unwrapped)


def test_check_env_catches_a_warning():
    # The silent checker must be able to fail on a mere warning: without a spec (not made via
    # gym.make) check_env only warns that it cannot test the other render modes.
    with pytest.raises(UserWarning, match="alternative render modes"):
        _check_env_silently(GridWorldEnv("empty", render_mode="ansi"))


# --------------------------------------------------------------------------- spaces & obs


def test_observation_modes():
    mdp = load_map("lava_gap")
    H, W = mdp.layout.height, mdp.layout.width
    S = H * W
    index = GridWorldEnv(mdp, obs_mode="index")
    onehot = GridWorldEnv(mdp, obs_mode="onehot")
    image = GridWorldEnv(mdp, obs_mode="image")
    assert index.observation_space == spaces.Discrete(S)
    assert onehot.observation_space == spaces.Box(0.0, 1.0, (S,), np.float32)
    assert image.observation_space == spaces.Box(0.0, 1.0, (4, H, W), np.float32)
    assert index.action_space == spaces.Discrete(4)
    for env in (index, onehot, image):
        env.reset(seed=0)
    # Walk right along row 1 from (1, 2) to (1, 3); the next move enters lava at (1, 4).
    start = 1 * W + 2
    obs = [env.reset(options={"state": start})[0] for env in (index, onehot, image)]
    for _ in range(2):
        assert obs[0] == index.state
        assert obs[1].dtype == np.float32 and obs[1].sum() == 1 and obs[1][index.state] == 1
        assert obs[2].dtype == np.float32
        np.testing.assert_array_equal(obs[2][0], mdp.layout.walls)
        np.testing.assert_array_equal(obs[2][1], mdp.layout.goals)
        np.testing.assert_array_equal(obs[2][2], mdp.layout.hazards)
        agent = np.zeros((H, W), np.float32)
        agent[divmod(index.state, W)] = 1
        np.testing.assert_array_equal(obs[2][3], agent)
        obs = [env.step(3)[0] for env in (index, onehot, image)]
    assert index.state == 1 * W + 4  # in the lava: hazard channel and agent channel overlap
    assert obs[2][2, 1, 4] == obs[2][3, 1, 4] == 1


def test_image_mode_needs_a_layout():
    mdp = replace(load_map("empty"), layout=None)
    with pytest.raises(ValueError, match="obs_mode='image' needs a grid layout"):
        GridWorldEnv(mdp, obs_mode="image")
    assert GridWorldEnv(mdp, obs_mode="onehot", render_mode="ansi").render() == "state 10 of 81\n"


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="obs_mode='pixels'"):
        GridWorldEnv("empty", obs_mode="pixels")
    with pytest.raises(ValueError, match="render_mode='human'"):
        GridWorldEnv("empty", render_mode="human")
    with pytest.raises(ValueError, match="options apply only when the world is given by name"):
        GridWorldEnv(load_map("empty"), slip=0.1)
    with pytest.raises(ValueError, match="unknown map 'nowhere'"):
        GridWorldEnv("nowhere")


# --------------------------------------------------------------------------- dynamics


def test_rewards_and_termination():
    env = GridWorldEnv("lava_gap", step_reward=-0.1, hazard_reward=-2.0)
    W = env.mdp.layout.width
    env.reset(options={"state": 1 * W + 3})
    _, r, term, trunc, info = env.step(3)  # into lava at (1, 4)
    assert (r, term, trunc, info["success"]) == (-2.0, True, False, False)  # exact in float32
    env.reset(options={"state": 6 * W + 6})
    _, r, term, trunc, info = env.step(3)  # into the goal at (6, 7)
    assert (r, term, trunc, info["success"]) == (1.0, True, False, True)
    env.reset(options={"state": 1 * W + 1})
    _, r, term, _, info = env.step(0)  # into the wall above: stay, pay a step
    assert (r, term, info["state"]) == (pytest.approx(-0.1), False, 1 * W + 1)


def test_start_distribution_is_uniform_over_start_cells():
    env = GridWorldEnv("#######\n#S...S#\n#..S..#\n#....G#\n#######")
    starts = [8, 12, 17]
    env.reset(seed=42)
    counts = np.bincount([env.reset()[0] for _ in range(3000)], minlength=env.mdp.num_states)
    assert set(np.flatnonzero(counts)) == set(starts)
    assert stats.chisquare(counts[starts]).pvalue > P_MIN  # against uniform


def test_slip_frequencies_match_the_table():
    env = GridWorldEnv("empty", slip=0.4)
    W = 9
    s, a = 3 * W + 3, 3  # an open cell, moving right
    law = {3 * W + 4: 0.6, 2 * W + 3: 0.2, 4 * W + 3: 0.2}  # right; up or down by slip
    env.reset(seed=7)
    samples = []
    for _ in range(3000):
        env.reset(options={"state": s})
        samples.append(env.step(a)[0])
    samples = np.array(samples)
    assert set(np.unique(samples)) == set(law)
    observed = [(samples == k).sum() for k in law]
    assert stats.chisquare(observed, [3000 * p for p in law.values()]).pvalue > P_MIN


def test_seeded_reset_reproduces_slippery_trajectories():
    env = GridWorldEnv("four_rooms", slip=0.5)
    actions = np.random.default_rng(0).integers(4, size=60).tolist()

    def roll(seed):
        out = [env.reset(seed=seed)[0]]
        for a in actions:
            obs, _, term, _, _ = env.step(a)
            out.append(obs)
            if term:
                out.append(env.reset()[0])
        return out

    assert roll(3) == roll(3)
    assert roll(3) != roll(4)


def test_reset_state_option_is_validated():
    env = GridWorldEnv("empty")
    assert env.reset(options={"state": np.int64(20)})[0] == 20
    for bad in (81, -1, 2.0, "10"):
        with pytest.raises(ValueError, match=r"options\['state'\]"):
            env.reset(options={"state": bad})


@pytest.mark.parametrize("action", [4, -1, 1.5, "up", np.array([0, 1])])
def test_invalid_actions_raise_with_the_value(action):
    env = GridWorldEnv("empty")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action") as err:
        env.step(action)
    assert repr(action) in str(err.value)
    assert "up, down, left, right" in str(err.value)


def test_numpy_integer_actions_are_accepted():
    env = GridWorldEnv("empty")
    env.reset(options={"state": 10})
    assert env.step(np.int64(3))[0] == 11
    assert env.step(np.array(1))[0] == 20


# --------------------------------------------------------------------------- rendering


def test_render_ansi_shows_the_agent():
    env = GridWorldEnv("empty", render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    rows = text.rstrip("\n").split("\n")
    assert rows[1] == "#A......#" and text.count("A") == 1
    env.step(1)
    rows = env.render().rstrip("\n").split("\n")
    assert rows[1] == "#S......#" and rows[2] == "#A......#"
    assert rows[7] == "#......G#"


def test_render_rgb_array():
    env = GridWorldEnv("four_rooms", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (13 * CELL, 13 * CELL, 3)
    centre = lambda r, c: tuple(frame[r * CELL + CELL // 2, c * CELL + CELL // 2])  # noqa: E731
    assert centre(1, 1) == COLORS["agent"]
    assert centre(0, 0) == COLORS["wall"] and centre(11, 11) == COLORS["goal"]
    env.step(3)
    frame = env.render()
    assert centre(1, 2) == COLORS["agent"] and centre(1, 1) == COLORS["start"]


def test_render_without_mode_returns_none():
    env = GridWorldEnv("empty")
    env.reset(seed=0)
    assert env.render() is None


# --------------------------------------------------------------------------- registration


@pytest.mark.parametrize("env_id", REGISTERED_IDS)
def test_registered_ids_have_time_limits(env_id):
    env = gym.make(env_id)
    world = env.unwrapped.world
    steps = world.steps if isinstance(world, envs.MazeSpec) else world.max_episode_steps
    assert env.spec.max_episode_steps == steps > 0
    wrapper, found = env, False
    while isinstance(wrapper, gym.Wrapper):
        found |= isinstance(wrapper, TimeLimit)
        wrapper = wrapper.env
    assert found


@pytest.mark.parametrize("env_id", [i for i in REGISTERED_IDS if "Slippery" not in i])
def test_registered_ids_truncate(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    mdp = env.unwrapped.mdp
    s = env.unwrapped.state
    # An action that bumps into a wall or the edge from the start: the agent never moves.
    a = next(a for a in range(4) if int(mdp.next_state[s, a, 0]) == s)
    for t in range(1, env.spec.max_episode_steps + 1):
        _, _, term, trunc, _ = env.step(a)
        assert not term
        assert trunc == (t == env.spec.max_episode_steps)
    assert env.unwrapped.state == s


def test_registered_slippery_lake_is_slippery():
    mdp = gym.make("GumbelGrid/Lake8x8Slippery-v0").unwrapped.mdp
    assert mdp.num_outcomes == 3
    np.testing.assert_allclose(mdp.prob[0, 0].numpy(), [1 / 3] * 3, rtol=1e-6)
