"""agent.factory: the default horizon, exploration bonus and actor warm-up follow the algo and the world."""

from __future__ import annotations

import pytest
import torch

from agent.config import TrainConfig
from agent.factory import (
    DEFAULT_EXPLORE_BONUS,
    DEFAULT_HORIZON,
    DEFAULT_MAZE_ACTOR_WARMUP,
    build_env,
    build_learner,
    build_networks,
    build_world,
    has_random_moves,
    resolve_defaults,
    resolve_horizon,
)

SLIPPERY = {"env": "FrozenLake-v1", "env_kwargs": ("map_name:8x8", "is_slippery:True")}
DETERMINISTIC = {"env": "FrozenLake-v1", "env_kwargs": ("map_name:8x8", "is_slippery:False")}


@pytest.mark.parametrize(
    ("world", "random_moves"),
    [
        (SLIPPERY, True), (DETERMINISTIC, False), ({"env": "four_rooms"}, False),
        ({"env": "four_rooms", "slip": 0.1}, True), ({"env": "maze:9x9"}, False),
        ({"env": "maze:9x9", "slip": 0.2}, True),
    ],
)
def test_random_moves_are_recognised(world, random_moves):
    assert has_random_moves(build_world(TrainConfig(**world))) is random_moves


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({**SLIPPERY}, 1),  # pathwise on random moves: one-step windows
        ({**DETERMINISTIC}, DEFAULT_HORIZON),
        ({**SLIPPERY, "algo": "ppo"}, DEFAULT_HORIZON),  # score-function learners keep their rollouts
        ({**SLIPPERY, "algo": "reinforce"}, DEFAULT_HORIZON),
        ({**SLIPPERY, "horizon": 8}, 8),  # an explicit --horizon always wins
        ({**DETERMINISTIC, "horizon": 3}, 3),
        ({"env": "maze:9x9"}, 1),  # pathwise on procedural mazes: one-step windows
        ({"env": "maze:9x9", "algo": "ppo"}, DEFAULT_HORIZON),
        ({"env": "maze:9x9", "horizon": 16}, 16),
        ({"env": "maze"}, DEFAULT_HORIZON),  # the fixed built-in maze is not procedural
    ],
)
def test_default_horizon(overrides, expected):
    cfg = TrainConfig(**overrides)
    assert resolve_horizon(cfg, build_world(cfg)) == expected


def test_maze_pool_sets_the_number_of_training_mazes():
    cfg = TrainConfig(env="maze:9x9", num_envs=8, maze_pool=37)
    assert build_env(cfg, torch.device("cpu"), maze_pool=cfg.maze_pool).num_worlds == 37
    assert build_env(cfg, torch.device("cpu")).num_worlds == 8  # default: min(num_envs, 1024)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"env": "four_rooms"}, DEFAULT_EXPLORE_BONUS),
        ({"env": "maze"}, DEFAULT_EXPLORE_BONUS),
        ({"env": "maze:9x9"}, 0.0),  # per-maze visit counts are invisible to the critic
        ({"env": "maze:9x9", "algo": "ppo"}, 0.0),
        ({"env": "maze:9x9", "explore_bonus": 0.1}, 0.1),  # an explicit value always wins
        ({"env": "four_rooms", "explore_bonus": 0.0}, 0.0),
    ],
)
def test_default_explore_bonus(overrides, expected):
    cfg = TrainConfig(**overrides)
    resolved = resolve_defaults(cfg, build_world(cfg))
    assert resolved.explore_bonus == expected
    assert resolved.horizon == resolve_horizon(cfg, build_world(cfg))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"env": "maze:9x9"}, DEFAULT_MAZE_ACTOR_WARMUP),  # pathwise on procedural mazes
        ({"env": "maze:9x9", "algo": "ppo"}, 0),  # the score-function learners keep their settings
        ({"env": "maze:9x9", "algo": "reinforce"}, 0),
        ({"env": "maze"}, 0),  # fixed maps, as before
        ({**SLIPPERY}, 0),
        ({"env": "maze:9x9", "actor_warmup": 0}, 0),  # an explicit value always wins
        ({"env": "four_rooms", "actor_warmup": 5000}, 5000),
    ],
)
def test_default_actor_warmup(overrides, expected):
    cfg = TrainConfig(**overrides)
    assert resolve_defaults(cfg, build_world(cfg)).actor_warmup == expected


def test_learner_refuses_an_unresolved_config():
    cfg = TrainConfig(env="empty", num_envs=4)
    env = build_env(cfg, torch.device("cpu"))
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    with pytest.raises(ValueError, match="resolve_defaults"):
        build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
