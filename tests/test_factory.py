"""agent.run.factory: one default configuration for every world; only how the policy sees the world
(`obs`) is resolved from it."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from agent.run.config import TrainConfig
from agent.run.factory import build_env
from agent.run.resolve import build_world, resolve_defaults

WORLDS = [
    {"env": "four_rooms"},
    {"env": "maze"},
    {"env": "lava_gap", "slip": 0.2},
    {"env": "cliff", "step_reward": -1.0, "hazard_reward": -100.0},
    {"env": "maze:9x9"},
    {"env": "maze:9x9", "slip": 0.1},
    {"env": "FrozenLake-v1", "env_kwargs": ("map_name:8x8", "is_slippery:True")},
    {"env": "CliffWalking-v1"},
    {"env": "Taxi-v4"},
]
WORLD_FIELDS = {"env", "env_kwargs", "slip", "step_reward", "hazard_reward", "obs"}


@pytest.mark.parametrize("world", WORLDS, ids=lambda w: w["env"] + str(w.get("slip", "")))
@pytest.mark.parametrize("algo", ["pathwise", "reinforce", "ppo"])
def test_every_world_gets_the_same_learner_settings(world, algo):
    default = resolve_defaults(TrainConfig(algo=algo), build_world(TrainConfig()))  # the default map's
    assert default.actor_steps > 0  # resolved: the comparison is of concrete values
    resolved = resolve_defaults(TrainConfig(**world, algo=algo), build_world(TrainConfig(**world)))
    differs = {f.name for f in fields(TrainConfig) if getattr(resolved, f.name) != getattr(default, f.name)}
    assert differs <= WORLD_FIELDS, f"the world changed learner settings: {differs - WORLD_FIELDS}"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"env": "maze:9x9"}, "image"),  # a family of layouts: the policy must see which one
        ({"env": "maze"}, "onehot"),  # one fixed map
        ({"env": "Taxi-v4"}, "onehot"),
        ({"env": "maze:9x9", "obs": "onehot"}, "onehot"),  # an explicit value wins
        ({"env": "four_rooms", "obs": "image"}, "image"),
    ],
)
def test_observation_follows_whether_the_world_is_a_family(overrides, expected):
    cfg = TrainConfig(**overrides)
    assert resolve_defaults(cfg, build_world(cfg)).obs == expected


def test_maze_pool_sets_the_number_of_training_mazes():
    cfg = TrainConfig(env="maze:9x9", num_envs=8, maze_pool=37)
    assert build_env(cfg, torch.device("cpu"), maze_pool=cfg.maze_pool).num_worlds == 37
    assert TrainConfig().maze_pool == 1024  # whatever the number of envs
