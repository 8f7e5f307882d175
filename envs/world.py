"""Turning a user's world spec into the tabular core: one function both envs and the CLI share."""

from __future__ import annotations

from typing import Any

from envs.maps import BUILTIN_MAPS, MapOptions, load_map
from envs.maze import MazeSpec, parse_maze_spec
from envs.mdp import TabularMDP
from envs.toy_text import from_gymnasium

World = TabularMDP | MazeSpec


def make_world(
    spec: str | TabularMDP | MazeSpec,
    *,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    **map_options: float,
) -> World:
    """Resolve a world spec.

    Args:
        spec: a built-in map name, a map file, a multi-line map, `maze:HxW` (a family of
            procedural mazes), a gymnasium toy-text id such as `FrozenLake-v1`, or an
            already built `TabularMDP` / `MazeSpec`.
        env_kwargs: keyword arguments for `gymnasium.make` (toy-text ids only).
        max_episode_steps: override the world's time limit.
        map_options: `MapOptions` fields (slip, step_reward, goal_reward, hazard_reward) for our
            own maps and mazes.
    """
    if isinstance(spec, (TabularMDP, MazeSpec)):
        if map_options or env_kwargs:
            raise ValueError("options apply only when the world is given by name")
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"world spec must be a string, TabularMDP or MazeSpec, not {type(spec).__name__}")
    if env_kwargs and not looks_like_gym_id(spec):
        raise ValueError(f"env_kwargs {env_kwargs} only apply to gymnasium ids like FrozenLake-v1, not {spec!r}")
    if looks_like_gym_id(spec):
        if map_options:
            raise ValueError(
                f"map options {sorted(map_options)} don't apply to {spec}; pass its own keyword "
                "arguments instead (e.g. is_slippery:False)"
            )
        mdp = from_gymnasium(spec, **(env_kwargs or {}))
        if max_episode_steps:
            mdp.max_episode_steps = max_episode_steps
        return mdp
    unknown = sorted(set(map_options) - set(MapOptions.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown map option(s) {unknown}; valid: {sorted(MapOptions.__dataclass_fields__)}")
    maze = parse_maze_spec(spec, MapOptions(**map_options) if map_options else None)
    if maze is not None:
        if max_episode_steps:
            maze = MazeSpec(maze.height, maze.width, maze.options, max_episode_steps)
        return maze
    return load_map(spec, max_episode_steps=max_episode_steps, **map_options)


def looks_like_gym_id(spec: str) -> bool:
    # Gymnasium ids end in -v<N> and are single-line; our built-in names never do.
    return "\n" not in spec and spec not in BUILTIN_MAPS and spec.rsplit("-v", 1)[-1].isdigit()
