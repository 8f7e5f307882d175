"""agent.factory: the default horizon follows the algo and whether the world's moves are random."""

from __future__ import annotations

import pytest
import torch

from agent.config import TrainConfig
from agent.factory import DEFAULT_HORIZON, build_env, build_world, has_random_moves, resolve_horizon

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
    ],
)
def test_default_horizon(overrides, expected):
    cfg = TrainConfig(**overrides)
    assert resolve_horizon(cfg, build_world(cfg)) == expected


def test_maze_pool_sets_the_number_of_training_mazes():
    cfg = TrainConfig(env="maze:9x9", num_envs=8, maze_pool=37)
    assert build_env(cfg, torch.device("cpu"), maze_pool=cfg.maze_pool).num_worlds == 37
    assert build_env(cfg, torch.device("cpu")).num_worlds == 8  # default: min(num_envs, 1024)
