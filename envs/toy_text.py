"""Import gymnasium toy-text envs (anything with `unwrapped.P`) into the tabular core.

The imported MDP keeps that env's action meaning (FrozenLake: 0 left, 1 down, 2 right, 3 up),
so the same action sequence gives the same trajectory in gymnasium's env and in ours.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.mdp import GridLayout, TabularMDP

_ACTION_NAMES = {
    "FrozenLake": ("left", "down", "right", "up"),
    "CliffWalking": ("up", "right", "down", "left"),
}


def from_gymnasium(env: str | gym.Env, **kwargs: Any) -> TabularMDP:
    """Build a `TabularMDP` from a toy-text env id (plus make() kwargs) or an env instance."""
    if isinstance(env, str):
        try:
            env = gym.make(env, **kwargs)
        except gym.error.Error as e:
            raise ValueError(f"cannot make gymnasium env {env!r} with {kwargs}: {e}") from None
    elif kwargs:
        raise ValueError("keyword arguments only apply when an env id is given")
    u = env.unwrapped
    P = getattr(u, "P", None)
    if not isinstance(P, dict):
        raise ValueError(
            f"{type(u).__name__} has no transition table `P`; only toy-text style envs "
            "(FrozenLake-v1, CliffWalking-v1, ...) can be imported"
        )
    S = len(P)
    A = len(P[0])
    O = max(len(P[s][a]) for s in range(S) for a in range(A))
    next_state = np.zeros((S, A, O), dtype=np.int64)
    prob = np.zeros((S, A, O), dtype=np.float32)
    reward = np.zeros((S, A, O), dtype=np.float32)
    ends_into: dict[int, set[bool]] = {}
    for s in range(S):
        for a in range(A):
            for o, (p, ns, r, done) in enumerate(P[s][a]):
                next_state[s, a, o], prob[s, a, o], reward[s, a, o] = int(ns), p, r
                ends_into.setdefault(int(ns), set()).add(bool(done))
            # Pad to O outcomes with zero-probability copies of the first one.
            for o in range(len(P[s][a]), O):
                next_state[s, a, o], reward[s, a, o] = next_state[s, a, 0], reward[s, a, 0]
    terminal = np.array([True in ends_into.get(s, set()) for s in range(S)])
    mixed = [s for s, flags in ends_into.items() if flags == {True, False}]
    if mixed:
        raise ValueError(
            f"state {mixed[0]} ends the episode on some transitions but not others; "
            "the tabular core needs termination to depend on the state entered"
        )
    # Terminal rows self-loop at zero reward: the envs never step from them.
    for s in np.nonzero(terminal)[0]:
        next_state[s] = s
        reward[s] = 0.0
        prob[s] = 0.0
        prob[s, :, 0] = 1.0
    prob /= prob.sum(-1, keepdims=True)  # P's float probabilities sum to 1 only up to rounding

    start = np.asarray(getattr(u, "initial_state_distrib", np.eye(S)[0]), dtype=np.float32)
    layout = _layout(u, S)
    name = type(u).__name__.replace("Env", "")
    if layout is not None:
        goal = layout.goals.reshape(-1)
    else:  # no grid known: a terminal state entered with positive reward counts as success
        goal = terminal & (reward.max(axis=(1, 2)) > 0)
    steps = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 4 * S
    return TabularMDP(
        next_state=torch.from_numpy(next_state),
        prob=torch.from_numpy(prob),
        reward=torch.from_numpy(reward),
        terminal=torch.from_numpy(terminal),
        start=torch.from_numpy(start / start.sum()),
        goal=torch.from_numpy(np.asarray(goal, dtype=bool)),
        name=name,
        action_names=_ACTION_NAMES.get(name, tuple(f"a{i}" for i in range(A))),
        max_episode_steps=int(steps),
        layout=layout,
    )


def _layout(u: Any, S: int) -> GridLayout | None:
    desc = getattr(u, "desc", None)
    if desc is not None:  # FrozenLake: S start, F frozen, H hole, G goal
        d = np.asarray(desc).astype(str)
        return GridLayout(walls=np.zeros(d.shape, bool), goals=d == "G", hazards=d == "H", starts=d == "S")
    shape, cliff = getattr(u, "shape", None), getattr(u, "_cliff", None)
    if shape is not None and cliff is not None:  # CliffWalking
        goals = np.zeros(shape, bool)
        goals[-1, -1] = True
        starts = np.zeros(shape, bool)
        starts[-1, 0] = True
        return GridLayout(walls=np.zeros(shape, bool), goals=goals, hazards=np.asarray(cliff, bool), starts=starts)
    return None
