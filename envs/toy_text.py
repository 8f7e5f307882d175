"""Import gymnasium toy-text envs (anything whose `step` follows its table `unwrapped.P`) into
the tabular core.

`P[s][a]` lists `(probability, next_state, reward, terminated)`; each entry becomes one outcome
o of (s, a), and `terminated` becomes `done[s, a, o]`: termination belongs to the transition, so
Taxi (which ends on the drop-off action, not on entering a state) imports as it is.

The imported MDP keeps that env's action meaning (FrozenLake: 0 left, 1 down, 2 right, 3 up), so
the same action sequence gives the same trajectory in gymnasium's env and in ours.

Success: entering a goal cell where the env draws one (FrozenLake's `G`, CliffWalking's
bottom-right corner); otherwise an episode-ending transition that pays the highest reward any
ending transition pays (Taxi: the drop-off at the destination, +20). `mdp.success_rule` says
which rule an import used.
"""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.mdp import GridLayout, TabularMDP

_ACTION_NAMES = {
    "FrozenLake": ("left", "down", "right", "up"),
    "CliffWalking": ("up", "right", "down", "left"),
    "Taxi": ("south", "north", "east", "west", "pickup", "dropoff"),
}
# Keyword arguments that make `step` depart from `P`, so the table would not be the env.
_OFF_TABLE = {"fickle_passenger": "the passenger's change of mind happens in step(), not in P"}


def error_line(e: BaseException, limit: int = 160) -> str:
    """An env's exception as one short line: its type and first line, less gymnasium's wrapping
    ("... was raised from the environment creator for ID with kwargs (...)")."""
    text = f"{type(e).__name__}: {e}".splitlines()[0].split(" was raised from the environment creator")[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


class NoTransitionTable(ValueError):
    """The env has no table `P` to import: it can only be stepped (`envs.blackbox`)."""


def from_gymnasium(env: str | gym.Env, **kwargs: Any) -> TabularMDP:
    """Build a `TabularMDP` from a toy-text env id (plus make() kwargs) or an env instance.

    A FrozenLake `desc` may be given as one string with rows separated by `/` (`SFF/FHF/FFG`).
    Bad ids and keyword arguments raise `ValueError` naming what the env accepts.
    """
    if isinstance(env, str):
        env = _make(env, kwargs)
    elif kwargs:
        raise ValueError("keyword arguments only apply when an env id is given")
    u = env.unwrapped
    P = getattr(u, "P", None)
    if not isinstance(P, dict):
        raise NoTransitionTable(
            f"{type(u).__name__} has no transition table `P`; only toy-text style envs "
            "(FrozenLake-v1, CliffWalking-v1, Taxi-v4, ...) can be imported"
        )
    S = len(P)
    A = len(P[0])
    O = max(len(P[s][a]) for s in range(S) for a in range(A))
    next_state = np.zeros((S, A, O), dtype=np.int64)
    prob = np.zeros((S, A, O), dtype=np.float64)
    reward = np.zeros((S, A, O), dtype=np.float32)
    done = np.zeros((S, A, O), dtype=bool)
    for s in range(S):
        for a in range(A):
            outcomes = P[s][a]
            for o, (p, ns, r, ends) in enumerate(outcomes):
                next_state[s, a, o], prob[s, a, o], reward[s, a, o], done[s, a, o] = int(ns), p, r, bool(ends)
            # Pad to O outcomes with zero-probability copies of the first one.
            for o in range(len(outcomes), O):
                next_state[s, a, o], reward[s, a, o] = next_state[s, a, 0], reward[s, a, 0]
                done[s, a, o] = done[s, a, 0]
    prob /= prob.sum(-1, keepdims=True)  # P's float probabilities sum to 1 only up to rounding

    start = np.asarray(getattr(u, "initial_state_distrib", np.eye(S)[0]), dtype=np.float64)
    layout = _layout(u, S)
    name = type(u).__name__.replace("Env", "")
    if layout is not None and layout.goals.any():
        success = done & layout.goals.reshape(-1)[next_state]
        rule = "entering the goal cell"
    else:
        best = reward[done].max() if done.any() else 0.0
        success = done & (reward == best)
        rule = f"an episode-ending transition paying the highest ending reward ({best:g})"
    steps = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 4 * S
    return TabularMDP(
        next_state=torch.from_numpy(next_state),
        prob=torch.from_numpy(prob.astype(np.float32)),
        reward=torch.from_numpy(reward),
        done=torch.from_numpy(done),
        success=torch.from_numpy(success),
        start=torch.from_numpy((start / start.sum()).astype(np.float32)),
        name=name,
        action_names=_ACTION_NAMES.get(name, tuple(f"a{i}" for i in range(A))),
        max_episode_steps=int(steps),
        layout=layout,
        success_rule=rule,
    )


def _make(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    """gymnasium.make with errors as one line naming the keyword arguments the env accepts."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"--env {env_id}: no such gymnasium env ({e}); see gymnasium.pprint_registry()") from None
    defaults = _constructor_defaults(spec)
    accepted = list(defaults) if defaults is not None else None
    unknown = sorted(set(kwargs) - set(accepted)) if accepted is not None else []
    if unknown:
        raise ValueError(f"{env_id} takes no keyword argument {', '.join(unknown)}; it accepts {', '.join(accepted)}")
    for key, value in kwargs.items():  # a mistyped switch ("maybe", "yes") would be truthy: refuse it
        default = (defaults or {}).get(key)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{env_id} keyword {key}={value!r} must be true or false (--env-kwargs {key}:true)")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{env_id} keyword {key}={value!r} must be a number (default {default})")
    for key, why in _OFF_TABLE.items():
        if kwargs.get(key):
            raise ValueError(f"{env_id} with {key}=True can't be imported: {why}")
    if isinstance(kwargs.get("desc"), str):
        kwargs = {**kwargs, "desc": kwargs["desc"].split("/")}
    try:
        return gym.make(env_id, **kwargs)
    except Exception as e:  # noqa: BLE001 (envs raise KeyError, TypeError, ValueError, ... for bad values)
        detail = error_line(e)
        hint = f"; it accepts {', '.join(accepted)}" if accepted else ""
        raise ValueError(f"cannot make {env_id} with {kwargs} ({detail}){hint}") from None


def _constructor_defaults(spec) -> dict[str, Any] | None:
    """The keyword arguments the env's constructor takes, each with its default (the spec's
    where it sets one, None where there is none); None when they can't be told."""
    try:
        entry = (
            spec.entry_point if callable(spec.entry_point) else gym.envs.registration.load_env_creator(spec.entry_point)
        )
        params = inspect.signature(entry).parameters
    except gym.error.DependencyNotInstalled as e:  # LunarLander without Box2D, ...: gymnasium's own fix
        raise ValueError(f"--env {spec.id}: {str(e).splitlines()[0]}") from None
    except (ValueError, TypeError, ImportError, AttributeError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    given = spec.kwargs or {}
    return {
        n: given.get(n, None if p.default is inspect.Parameter.empty else p.default)
        for n, p in params.items()
        if n not in ("self", "render_mode")
    }


def _layout(u: Any, S: int) -> GridLayout | None:
    desc = getattr(u, "desc", None)
    if desc is not None and np.asarray(desc).size == S:  # FrozenLake: S start, F frozen, H hole, G goal
        d = np.asarray(desc).astype(str)
        return GridLayout(walls=np.zeros(d.shape, bool), goals=d == "G", hazards=d == "H", starts=d == "S")
    shape, cliff = getattr(u, "shape", None), getattr(u, "_cliff", None)
    if shape is not None and cliff is not None:  # CliffWalking
        goals = np.zeros(shape, bool)
        goals[-1, -1] = True
        starts = np.zeros(shape, bool)
        starts[-1, 0] = True
        return GridLayout(walls=np.zeros(shape, bool), goals=goals, hazards=np.asarray(cliff, bool), starts=starts)
    return None  # e.g. Taxi: its 500 states are not the cells of one grid
