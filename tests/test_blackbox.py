"""Gymnasium envs known only by stepping them (envs/blackbox.py): the batched adapter against
gymnasium's own env, Minigrid's observation and success, the refusals, and train.py / evaluate
on them."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ROOT, assert_one_line_error, run_train

from envs.blackbox import BlackBoxEnv, mission_note, observe_one, open_black_box, to_float

minigrid = pytest.importorskip("minigrid")  # the [minigrid] extra; CI installs it with [dev]


def test_copies_step_as_gymnasium_steps_each_env_alone():
    spec = open_black_box("CartPole-v1")
    assert (spec.num_actions, spec.obs_shape, spec.max_episode_steps, spec.success_rule) == (2, (4,), 500, None)
    B, seed = 3, 7
    env = BlackBoxEnv(spec, B, seed=seed)
    obs, _ = env.reset()
    alone = [gym.make("CartPole-v1") for _ in range(B)]
    expected = [e.reset(seed=seed + i)[0] for i, e in enumerate(alone)]
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(120):
        assert torch.allclose(obs, torch.as_tensor(np.stack(expected)))
        actions = rng.integers(0, 2, size=B)
        obs, reward, terminated, truncated, info = env.step(torch.as_tensor(actions))
        for i, e in enumerate(alone):
            o, r, term, trunc, _ = e.step(int(actions[i]))
            assert info["final_obs"][i].tolist() == pytest.approx(o.tolist())  # where the step landed
            assert (float(reward[i]), bool(terminated[i]), bool(truncated[i])) == (r, term, trunc)
            if term or trunc:  # gymnasium's env starts over from its own generator, as the vector env's copy does
                ended += 1
                o, _ = e.reset()
                assert float(info["episode"]["l"][i]) == float(info["episode"]["r"][i]) > 0  # 1 per step
            expected[i] = o
    assert ended > B  # episodes ended and were reset along the way
    assert "success" not in info  # CartPole defines no success


def test_minigrid_observation_is_the_image_and_the_direction():
    spec = open_black_box("MiniGrid-Empty-5x5-v0")
    assert (spec.num_actions, spec.obs_shape, spec.max_episode_steps) == (7, (151,), 100)
    raw = gym.make("MiniGrid-Empty-5x5-v0")
    o, _ = raw.reset(seed=3)
    flat = to_float(raw.observation_space, True, {"image": o["image"][None], "direction": np.array([o["direction"]])})
    assert flat.shape == (1, 151)
    assert np.allclose(flat[0, :147] * np.tile([10, 5, 2], 49), o["image"].reshape(-1))
    assert flat[0, 147:].tolist() == np.eye(4)[o["direction"]].tolist()


def test_observations_are_counted_by_their_bucket():
    # Empty-5x5's agent sees one view per (cell, heading): 3 x 3 cells x 4 headings at most, each
    # in a bucket of its own, and the same view always in the same one.
    env = BlackBoxEnv(open_black_box("MiniGrid-Empty-5x5-v0"), 8, seed=0)
    obs, _ = env.reset()
    assert torch.equal(env.state, env.bucket(obs))
    views, rng = {}, np.random.default_rng(0)
    for _ in range(300):
        obs, _, _, _, info = env.step(torch.as_tensor(rng.integers(0, 3, size=8)))  # turns and forward
        for o, b in zip(info["final_obs"], info["final_state"], strict=True):
            assert views.setdefault(tuple(o.tolist()), int(b)) == int(b)
        assert torch.equal(env.state, env.bucket(obs))
    assert 20 <= len(views) <= 36
    assert len(set(views.values())) == len(views)  # no two views share a bucket
    assert all(0 <= b < env.S for b in views.values())


def test_the_visit_bonus_on_a_black_box_counts_observations(tmp_path):
    args = [
        "ppo", "--env", "MiniGrid-Empty-5x5-v0", "--explore-bonus", "0.1", "--num-envs", "8", "--horizon", "16",
        "--total-timesteps", "512", "--eval-every", "0", "--eval-episodes", "2", "--wandb-mode", "disabled",
        "--runs-dir", str(tmp_path), "--run-name", "b",
    ]  # fmt: skip
    proc = run_train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    counts = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["learner"]["bonus"]["counts"]
    assert counts.shape == (1, 2**20) and counts.sum() == 512 and 10 <= int((counts > 0).sum()) <= 36


def test_minigrid_success_is_reaching_the_goal():
    env = BlackBoxEnv(open_black_box("MiniGrid-Empty-5x5-v0"), 1, seed=0)
    env.reset()
    # Empty-5x5: the agent starts at (1, 1) facing east, the goal is at (3, 3).
    forward, right = 2, 1
    for a in (forward, forward, right, forward):
        _, reward, terminated, _, info = env.step(torch.tensor([a]))
        assert not terminated.any() and not info["success"].any()
    _, reward, terminated, _, info = env.step(torch.tensor([forward]))
    assert terminated.all() and info["success"].all()
    assert float(reward[0]) == pytest.approx(1 - 0.9 * 5 / 100)
    assert int(info["episode"]["l"][0]) == 5


@pytest.mark.parametrize(
    "env_id, says",
    [
        ("Pendulum-v1", r"only Discrete\(n\) actions"),
        ("NoSuchEnv-v0", "no such gymnasium env"),
        ("MiniGrid-NoSuch-v0", "no such gymnasium env"),
    ],
)
def test_what_cannot_be_trained_is_refused_in_one_line(env_id, says):
    with pytest.raises(ValueError, match=says):
        open_black_box(env_id)


def test_an_env_without_a_time_limit_is_refused():
    gym.register("NoLimitCartPole-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    try:
        with pytest.raises(ValueError, match="has no time limit"):
            open_black_box("NoLimitCartPole-v0")
    finally:
        gym.registry.pop("NoLimitCartPole-v0")


class _ResetFails(minigrid.envs.EmptyEnv):
    """A Minigrid env whose reset raises, as Minigrid's WFC envs do when their wheel lacks the pattern files."""

    def reset(self, **kwargs):
        raise FileNotFoundError("patterns/SimpleMaze.png")


def test_a_minigrid_env_that_cannot_reset_is_refused_in_one_line():
    gym.register("MiniGrid-ResetFails-v0", entry_point=_ResetFails)
    try:
        with pytest.raises(ValueError, match=r"fails to reset \(FileNotFoundError: patterns/SimpleMaze.png\)$"):
            open_black_box("MiniGrid-ResetFails-v0")
    finally:
        gym.registry.pop("MiniGrid-ResetFails-v0")


def test_babyai_levels_open_with_their_time_limit_and_say_when_the_mission_changes(tmp_path):
    # BabyAI sets max_steps on reset (it is 0 before), and most of its levels draw a new mission
    # each episode, which the policy does not see.
    fixed, varying = open_black_box("BabyAI-GoToRedBall-v0"), open_black_box("BabyAI-GoToLocal-v0")
    raw = gym.make("BabyAI-GoToRedBall-v0")
    raw.reset(seed=0)
    assert fixed.max_episode_steps == raw.unwrapped.max_steps > 0
    assert not fixed.mission_varies and not open_black_box("MiniGrid-Empty-5x5-v0").mission_varies
    assert varying.mission_varies and mission_note(fixed) is None
    assert len(varying.missions) > 1 and "the policy does not see it" in mission_note(varying)

    args = ["ppo", "--env", "BabyAI-GoToLocal-v0", "--num-envs", "4", "--horizon", "16",
            "--total-timesteps", "128", "--eval-episodes", "4", "--wandb-mode", "disabled", "--no-progress",
            "--runs-dir", str(tmp_path)]  # fmt: skip
    proc = run_train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("note: BabyAI-GoToLocal-v0 changes its mission between episodes") == 1


# Blackjack's observation is a Tuple of three Discrete spaces; gymnasium registers it without a time limit.
BLACKJACK = "gymnasium.envs.toy_text.blackjack:BlackjackEnv"


class SequenceObs(gym.Env):
    observation_space = gym.spaces.Sequence(gym.spaces.Discrete(3))
    action_space = gym.spaces.Discrete(2)


def test_a_structured_observation_is_gymnasium_s_flat_form_and_one_without_one_is_one_line():
    gym.register("BlackjackLimit-v0", entry_point=BLACKJACK, max_episode_steps=10)
    gym.register("SequenceObs-v0", entry_point=SequenceObs, max_episode_steps=10)
    try:
        spec = open_black_box("BlackjackLimit-v0")
        assert spec.obs_shape == (32 + 11 + 2,)  # a one-hot block for each part of the tuple
        env = BlackBoxEnv(spec, 4, seed=0)
        obs, _ = env.reset()
        blocks = lambda x: torch.stack([x[:, :32].sum(1), x[:, 32:43].sum(1), x[:, 43:].sum(1)])  # noqa: E731
        assert torch.equal(blocks(obs), torch.ones(3, 4))
        ended = False
        for _ in range(6):  # every episode of Blackjack ends within a few steps
            obs, _, _, _, info = env.step(torch.ones(4, dtype=torch.long))  # hit, until bust
            assert torch.equal(blocks(info["final_obs"]), torch.ones(3, 4))
            ended |= bool(info["done"].any())
        env.close()
        assert ended
        single = gym.make("BlackjackLimit-v0")
        first, _ = single.reset(seed=3)
        row = observe_one(spec, single.observation_space, first)  # (1, D): the same form, one at a time
        assert row.shape == (1, 45) and np.flatnonzero(row).tolist() == [first[0], 32 + first[1], 43 + first[2]]
        with pytest.raises(
            ValueError, match=r"^--env SequenceObs-v0: its observations, Sequence\(.*\), have no flat"
        ) as e:
            open_black_box("SequenceObs-v0")
        assert "\n" not in str(e.value)
    finally:
        gym.registry.pop("BlackjackLimit-v0"), gym.registry.pop("SequenceObs-v0")


def test_the_default_learner_trains_on_a_structured_observation(tmp_path):
    code = (
        f"import sys, gymnasium as gym; gym.register('BlackjackLimit-v0', entry_point='{BLACKJACK}', "
        "max_episode_steps=10); import train; sys.exit(train.main())"
    )
    args = ["--env", "BlackjackLimit-v0", "--total-timesteps", "1024", "--eval-episodes", "16",
            "--wandb-mode", "disabled", "--runs-dir", str(tmp_path), "--run-name", "bj"]  # fmt: skip
    proc = run_train(args, tmp_path, script=("-c", code))
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "bj" / "config.json").read_text())
    final = json.loads((tmp_path / "bj" / "final_eval.json").read_text())
    assert config["algo"] == "model" and final["episodes"] == 16 and -1 <= final["mean_return"] <= 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # gymnasium on the v0 ids that have a v1
def test_every_registered_minigrid_and_babyai_env_opens_and_steps():
    # Users bring Minigrid envs that nobody here named: each one opens and its copies step, or
    # is refused in one line (the WFC envs, whose pattern files this Minigrid wheel lacks).
    ids = sorted(i for i in gym.registry if i.startswith(("MiniGrid-", "BabyAI-")))
    refused = {}
    for env_id in ids:
        try:
            spec = open_black_box(env_id)
        except ValueError as e:
            refused[env_id] = str(e)
            continue
        env = BlackBoxEnv(spec, 2, seed=0)
        obs, _ = env.reset()
        for _ in range(5):
            obs, reward, terminated, truncated, _ = env.step(torch.randint(0, spec.num_actions, (2,)))
        env.close()
        assert obs.shape == (2, 151) and spec.max_episode_steps > 0, env_id
    assert len(ids) > 150 and set(refused) <= {i for i in ids if "-WFC-" in i}, refused
    assert all("\n" not in why and "fails to reset" in why for why in refused.values())


def test_a_missing_minigrid_install_is_one_line(tmp_path):
    # minigrid made unimportable, as in an environment without the [minigrid] extra
    code = "import sys; sys.modules['minigrid'] = None; import train; sys.exit(train.main())"
    proc = run_train(["ppo", "--env", "MiniGrid-Empty-5x5-v0"], tmp_path, script=("-c", code))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr)
    assert "pip install -e '.[minigrid]'" in proc.stderr


@pytest.mark.parametrize("algo", [[], ["ppo"]])  # the default learner looks for a table first; ppo opens the env
def test_an_env_whose_package_is_missing_is_one_line_with_gymnasium_s_fix(tmp_path, algo):
    # Box2D made unimportable, so that gymnasium raises DependencyNotInstalled for LunarLander
    code = "import sys; sys.modules['Box2D'] = None; import train; sys.exit(train.main())"
    proc = run_train([*algo, "--env", "LunarLander-v3"], tmp_path, script=("-c", code))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr)
    assert "--env LunarLander-v3: Box2D is not installed" in proc.stderr and "gymnasium[box2d]" in proc.stderr


# An env whose every copy raises on its 100th step, as a crashed simulator would.
FLAKY = """
import sys, gymnasium as gym, numpy as np
class Flaky(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)
    steps = 0
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}
    def step(self, action):
        self.steps += 1
        if self.steps == 100:
            raise RuntimeError("the simulator died")
        return np.zeros(3, np.float32), 1.0, False, False, {}
gym.register("Flaky-v0", entry_point=Flaky, max_episode_steps=20)
import train; sys.exit(train.main())
"""


def test_an_env_that_fails_mid_run_is_one_line_and_a_checkpoint(tmp_path):
    args = ["ppo", "--env", "Flaky-v0", "--num-envs", "4", "--horizon", "16", "--total-timesteps", "100000",
            "--eval-every", "0", "--wandb-mode", "disabled", "--runs-dir", str(tmp_path),
            "--run-name", "f"]  # fmt: skip
    proc = run_train(args, tmp_path, script=("-c", FLAKY))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "--env Flaky-v0: the env raised RuntimeError in a step: the simulator died" in line
    assert "continue with: python train.py --resume" in line
    # Six whole updates of 4 x 16 steps came before the 100th step; the seventh's part is dropped.
    saved = torch.load(tmp_path / "f" / "checkpoint.pt", weights_only=True)
    assert saved["global_step"] == 6 * 64


def test_train_and_evaluate_a_black_box_env(tmp_path):
    runs = tmp_path / "runs"
    common = ["--runs-dir", str(runs), "--wandb-mode", "disabled", "--no-progress"]
    refused = run_train(["pathwise", "--env", "CartPole-v1", *common], tmp_path)  # it needs the env's step
    assert refused.returncode == 2 and "python train.py model --env CartPole-v1" in refused.stderr
    assert_one_line_error(refused.stderr)

    args = ["ppo", "--env", "CartPole-v1", "--num-envs", "16", "--total-timesteps", "2048", "--eval-episodes", "8"]
    proc = run_train([*args, *common, "--run-name", "cp"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((runs / "cp" / "config.json").read_text())
    assert (config["obs"], config["explore_starts"]) == ("flat", 0.0)
    final = json.loads((runs / "cp" / "final_eval.json").read_text())
    assert final["episodes"] == 8 and "normalized_score" not in final and "success_rate" not in final
    assert final["return_ci95_low"] <= final["mean_return"] <= final["return_ci95_high"]

    resumed = run_train(["--resume", str(runs / "cp"), "--total-timesteps", "4096", "--no-progress"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((runs / "cp" / "final_eval.json").read_text())["global_step"] == 4096

    out = subprocess.run(
        [sys.executable, "-m", "agent.evaluate", str(runs / "cp"), "--episodes", "20", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["episodes"] == 20 and result["success_rule"] is None and result["time_limit"] == 500


@pytest.mark.learning
def test_ppo_solves_minigrid_empty_5x5(tmp_path):
    # PPO (samples class) from the default settings: 5 steps is the shortest path, worth 0.955.
    runs = tmp_path / "runs"
    args = "ppo --env MiniGrid-Empty-5x5-v0 --total-timesteps 40960 --eval-episodes 32 --stop-at-success 1.0"
    common = ["--runs-dir", str(runs), "--run-name", "mg", "--wandb-mode", "disabled", "--no-progress"]
    proc = run_train([*args.split(), *common], tmp_path)
    assert proc.returncode == 0, proc.stderr
    final = json.loads((runs / "mg" / "final_eval.json").read_text())
    assert final["success_rate"] == 1.0 and final["mean_return"] == pytest.approx(0.955, abs=0.01)


def test_ctrl_c_on_a_black_box_run_saves_and_resume_continues_every_step_once(tmp_path):
    # The model learner (the default here) on CartPole: Ctrl-C mid-run saves its checkpoint (the
    # model, its optimiser and its replay with it), and --resume logs each update once.
    import signal

    from test_faults import checkpoint_step, logged_steps, start, wait_for

    runs = tmp_path / "runs"
    run_dir = runs / "bb"
    args = "--env CartPole-v1 --total-timesteps 400000 --eval-every 0 --eval-episodes 8 --no-progress"
    common = ["--wandb-mode", "disabled", "--runs-dir", str(runs), "--run-name", "bb"]
    proc = start([*args.split(), *common], tmp_path / "home", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: len(logged_steps(run_dir)) > 3, timeout=120, what="training")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read()
    saved = checkpoint_step(run_dir)
    assert saved >= 256 and json.loads((run_dir / "config.json").read_text())["algo"] == "model"
    replay = torch.load(run_dir / "checkpoint.pt", weights_only=True)["stopped"]["replay"]
    # Every step it took, and those of the window the signal cut short (its real transitions stay).
    assert saved <= replay["obs"].shape[0] <= saved + 256 and replay["obs"].shape[1] == 4
    assert replay["terminal"].sum() >= 1
    resumed = run_train(["--resume", str(run_dir), "--total-timesteps", str(saved + 1024)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert logged_steps(run_dir) == list(range(256, saved + 1024 + 1, 256))
    assert "stopped" not in torch.load(run_dir / "checkpoint.pt", weights_only=True)  # a finished run's is small
