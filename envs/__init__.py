"""Gridworlds over one tabular core: ASCII maps, procedural mazes, imported toy-text envs, a
`gymnasium.Env` and a batched, differentiable torch env.

Importing this package registers the `GumbelGrid/...-v0` gymnasium ids (see `REGISTERED_IDS`):
`gym.make(id)` gives one env, `gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")`
the batched torch env.
"""

from gymnasium.envs.registration import register, registry

from envs.batched import BatchedGridWorld
from envs.grid_env import OBS_MODES, GridWorldEnv
from envs.maps import BUILTIN_MAPS, MapOptions, compile_grid, load_map, parse_map
from envs.maze import MazeSpec, generate_maze, parse_maze_spec
from envs.mdp import ACTION_NAMES, GridLayout, TabularMDP
from envs.oracle import (
    ValueIterationResult,
    expected_return,
    normalized_score,
    optimal_time_limited_return,
    policy_metrics,
    policy_values,
    time_limited_return,
    uniform_policy,
    value_iteration,
)
from envs.toy_text import from_gymnasium
from envs.world import make_world

# id -> (world spec, extra kwargs). Time limits come from each world's max_episode_steps.
_IDS = {
    "GumbelGrid/Empty-v0": ("empty", {}),
    "GumbelGrid/FourRooms-v0": ("four_rooms", {}),
    "GumbelGrid/Maze-v0": ("maze", {}),
    "GumbelGrid/LavaGap-v0": ("lava_gap", {}),
    "GumbelGrid/Cliff-v0": ("cliff", {}),
    "GumbelGrid/Lake8x8-v0": ("lake8x8", {}),
    "GumbelGrid/Lake8x8Slippery-v0": ("lake8x8", {"slip": 2 / 3}),
    "GumbelGrid/RandomMaze9x9-v0": ("maze:9x9", {"obs_mode": "image"}),
}
REGISTERED_IDS: tuple[str, ...] = tuple(_IDS)

for _id, (_world, _kwargs) in _IDS.items():
    if _id not in registry:
        _steps = make_world(_world).steps if _world.startswith("maze:") else load_map(_world).max_episode_steps
        register(
            id=_id,
            entry_point="envs.grid_env:GridWorldEnv",
            # gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point") builds the batched env.
            vector_entry_point="envs.batched:BatchedGridWorld",
            kwargs={"world": _world, "obs_mode": "index", **_kwargs},
            max_episode_steps=_steps,
        )

__all__ = [
    "ACTION_NAMES",
    "BUILTIN_MAPS",
    "OBS_MODES",
    "REGISTERED_IDS",
    "BatchedGridWorld",
    "GridLayout",
    "GridWorldEnv",
    "MapOptions",
    "MazeSpec",
    "TabularMDP",
    "ValueIterationResult",
    "compile_grid",
    "expected_return",
    "from_gymnasium",
    "generate_maze",
    "load_map",
    "make_world",
    "normalized_score",
    "optimal_time_limited_return",
    "parse_map",
    "parse_maze_spec",
    "policy_metrics",
    "policy_values",
    "time_limited_return",
    "uniform_policy",
    "value_iteration",
]
