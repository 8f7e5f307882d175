"""Env steps per second: `envs.BatchedGridWorld` next to gymnasium and Minigrid.

    python -m benchmarks.env_throughput                      # the full table (a few minutes)
    python -m benchmarks.env_throughput --batch-sizes 1 1024 # fewer batch sizes
    python -m benchmarks.env_throughput --smoke              # seconds, for CI

Systems, timed back to back in this process, each `--repeats` times (median reported):
- gymnasium `FrozenLake-v1` (8x8, not slippery), one env: an `env.step` loop over pre-drawn
  random actions, resetting when an episode ends. The ratio column is against this row.
- `gymnasium.vector.SyncVectorEnv` of that env (`--vector-envs` copies).
- Minigrid `MiniGrid-Empty-8x8-v0`, one env, when minigrid is installed (the `[bench]` extra).
- `BatchedGridWorld` on FrozenLake 8x8 (imported from gymnasium, so the same dynamics) and on
  the built-in 9x9 `empty` room, at each `--batch-sizes` B, in three modes:
  `int` (random int64 actions drawn up front, index observations like FrozenLake's), `diff-fwd`
  (one-hot float actions requiring grad: the differentiable path builds its graph, no backward) and `diff-fwd+bwd` (a
  `--horizon`-step rollout, loss = sum of rewards + obs . random weights, `.backward()`).
  Steps/s counts B env steps per `step` call, so B * T per rollout.

A second table times the differentiable step kernel itself, forward + backward over a
`--kernel-steps` chain: `envs.diffstep.OneHotStep` (the env's path for one-hot actions)
against the dense reference `envs.diffstep.dense_step`, both built from the env's tables.

Results go to `--out`/env_throughput.json and env_throughput.png.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.nn.functional import one_hot

from agent.gumbel_figures import save_figure
from benchmarks.common import (
    Common,
    Timing,
    announce_machine,
    apply_threads,
    fail,
    format_table,
    machine_info,
    parse_args,
    profile_ops,
    pyplot,
    time_it,
    write_json,
)
from envs import BatchedGridWorld, TabularMDP, from_gymnasium, load_map
from envs.diffstep import OneHotStep, dense_step

GYM_ID, GYM_KWARGS = "FrozenLake-v1", {"map_name": "8x8", "is_slippery": False}
MINIGRID_ID = "MiniGrid-Empty-8x8-v0"
MODES = ("int", "diff-fwd", "diff-fwd+bwd")


def worlds() -> dict[str, TabularMDP]:
    """The maps the batched env runs on, by table label."""
    return {"FrozenLake8x8": from_gymnasium(GYM_ID, **GYM_KWARGS), "empty 9x9": load_map("empty")}


# ----------------------------------------------------------------------------- reference envs
def gym_single(env: gym.Env, steps: int, seed: int) -> Callable[[], int]:
    """A plain `env.step` loop over pre-drawn random actions; returns a call doing `steps` steps."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]

    def run() -> int:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        return steps

    return run


def gym_vector(num_envs: int, steps: int, seed: int) -> tuple[Callable[[], int], Callable[[], None]]:
    """SyncVectorEnv of `num_envs` FrozenLakes (autoreset on the next step, gymnasium's default)."""
    env = gym.vector.SyncVectorEnv([lambda: gym.make(GYM_ID, **GYM_KWARGS) for _ in range(num_envs)])
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(env.single_action_space.n, size=(steps, num_envs))  # (T, n)

    def run() -> int:
        for a in actions:
            env.step(a)
        return steps * num_envs

    return run, env.close


# ----------------------------------------------------------------------------- the batched env
def batched(mdp: TabularMDP, B: int, mode: str, horizon: int, seed: int) -> Callable[[], int]:
    """One call = `horizon` steps of B envs in `mode`; returns the env steps done (B * horizon)."""
    # The integer path returns cell indices, as gymnasium's FrozenLake does; the differentiable
    # path needs positions, so one-hot observations.
    env = BatchedGridWorld(mdp, B, obs_mode="index" if mode == "int" else "onehot", seed=seed)
    env.reset()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(env.A, (horizon, B), generator=g)  # (T, B)
    if mode == "int":

        def run() -> int:
            for t in range(horizon):
                env.step(idx[t])
            return B * horizon

        return run

    acts = one_hot(idx, env.A).float().requires_grad_()  # (T, B, A)
    weights = torch.randn(env.S, generator=g)  # (S,)
    backward = mode == "diff-fwd+bwd"

    def run() -> int:
        env.detach()  # drop the previous call's graph
        acts.grad = None
        loss = torch.zeros(())
        for t in range(horizon):
            obs, reward, *_ = env.step(acts[t])  # (B, S), (B,)
            loss = loss + reward.sum() + (obs @ weights).sum()
        if backward:
            loss.backward()
        return B * horizon

    return run


def kernel(mdp: TabularMDP, B: int, steps: int, seed: int, dense: bool) -> Callable[[], torch.Tensor]:
    """Forward + backward through `steps` chained differentiable steps, by kernel.

    Built straight from a `BatchedGridWorld`'s tables, world ids and start states, so only the
    kernel differs. Returns a call that gives the action gradient (for the parity check).
    """
    env = BatchedGridWorld(mdp, B, obs_mode="onehot", seed=seed)
    env.reset()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(env.A, (steps, B), generator=g)  # (T, B)
    acts = one_hot(idx, env.A).float().requires_grad_()  # (T, B, A)
    weights = torch.randn(env.S, generator=g)  # (S,)
    tables, w, s0 = env.tables, env.world_id, env.state.clone()
    o = torch.zeros_like(s0)  # first outcome: the intended move (the only one on these maps)

    def run() -> torch.Tensor:
        acts.grad = None
        pos = one_hot(s0, env.S).float().requires_grad_()  # (B, S)
        s = s0
        loss = torch.zeros(())
        for t in range(steps):
            if dense:
                pos, reward, live = dense_step(pos, acts[t], tables, w, o)  # (B, S), (B,), (B, S)
            else:
                pos, reward, live, s = OneHotStep.apply(pos, acts[t], tables, w, s, idx[t], o)
            loss = loss + reward.sum() + (pos @ weights).sum() + (live @ weights).sum()
        loss.backward()
        return acts.grad

    return run


# ----------------------------------------------------------------------------- main
def _row(system: str, world: str, B: int | str, mode: str, steps: int, t: Timing) -> dict:
    return {
        "system": system,
        "world": world,
        "B": B,
        "mode": mode,
        "steps_per_s": steps / t.median,
        "s_per_call": t.median,
        "steps_per_call": steps,
        "calls_per_repeat": t.calls,
        "spread": t.spread,
        "times": list(t.times),
    }


def plot(rows: list[dict], path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    labels = [f"{r['system']} {r['world']} B={r['B']} {r['mode']}".replace(" -", "") for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.2))
    colors = [
        "tab:gray"
        if r["system"] != "BatchedGridWorld"
        else {"int": "tab:blue", "diff-fwd": "tab:orange", "diff-fwd+bwd": "tab:red"}[r["mode"]]
        for r in rows
    ]
    ax.barh(range(len(rows)), [r["steps_per_s"] for r in rows], color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("env steps / s (median, log scale)")
    ax.set_title("Env throughput", fontsize=10)
    return save_figure(fig, path)


@dataclass
class Args(Common):
    batch_sizes: tuple[int, ...] = (1, 1024, 65536)
    """Numbers of envs B of the batched env."""
    horizon: int = 16
    """Steps per timed call of the batched env (T of the forward+backward rollout)."""
    kernel_steps: int = 4
    """Chained steps of the kernel comparison (the dense reference holds (B, S, A) tensors per
    step, about 0.35 GB per step at B=65536 on 9x9)."""
    gym_steps: int = 1000
    """env.step calls per timed call of the gymnasium/minigrid loops."""
    vector_envs: tuple[int, ...] = (8, 64)
    """Copies in the gymnasium SyncVectorEnv rows."""
    min_time: float = 0.2
    """Seconds a repeat lasts at least (fast calls are repeated)."""
    minigrid: bool = True
    """The Minigrid row (--no-minigrid skips it)."""
    profile: bool = False
    """Also run torch.profiler over the integer path on FrozenLake at the largest B and store its
    top operators (where the time of a batched step goes)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.env_throughput", __doc__)
    if args.smoke:
        args.batch_sizes, args.horizon, args.kernel_steps = (1, 64), 4, 2
        args.gym_steps, args.vector_envs, args.min_time, args.repeats = 50, (2,), 0.01, 2
        args.profile = True
    for name in ("repeats", "horizon", "kernel_steps", "gym_steps"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    apply_threads(args.threads)
    announce_machine()
    timed = lambda fn: time_it(fn, repeats=args.repeats, min_time=args.min_time)  # noqa: E731
    rows: list[dict] = []
    skipped: list[str] = []

    def record(row: dict) -> None:
        rows.append(row)
        print(
            f"  {row['system']:<18} {row['world']:<14} B={row['B']!s:<6} {row['mode']:<13} "
            f"{row['steps_per_s']:>14,.0f} steps/s",
            flush=True,
        )

    # Reference envs.
    env = gym.make(GYM_ID, **GYM_KWARGS)
    record(
        _row(
            "gymnasium",
            "FrozenLake8x8",
            1,
            "env.step",
            args.gym_steps,
            timed(gym_single(env, args.gym_steps, args.seed)),
        )
    )
    env.close()
    for n in args.vector_envs:
        run, close = gym_vector(n, max(1, args.gym_steps // n), args.seed)
        record(_row("gym SyncVectorEnv", "FrozenLake8x8", n, "env.step", max(1, args.gym_steps // n) * n, timed(run)))
        close()
    if not args.minigrid:
        skipped.append("minigrid: --no-minigrid")
    elif importlib.util.find_spec("minigrid") is None:
        msg = f"minigrid not installed (pip install minigrid, or the [bench] extra): skipping {MINIGRID_ID}"
        print(msg, flush=True)
        skipped.append(msg)
    else:
        import minigrid  # noqa: F401  (registers the MiniGrid ids)

        env = gym.make(MINIGRID_ID)
        record(
            _row(
                "minigrid",
                "Empty-8x8",
                1,
                "env.step",
                args.gym_steps,
                timed(gym_single(env, args.gym_steps, args.seed)),
            )
        )
        env.close()

    # The batched env.
    maps = worlds()
    for label, mdp in maps.items():
        for B in args.batch_sizes:
            for mode in MODES:
                record(
                    _row(
                        "BatchedGridWorld",
                        label,
                        B,
                        mode,
                        B * args.horizon,
                        timed(batched(mdp, B, mode, args.horizon, args.seed)),
                    )
                )
    base = rows[0]["steps_per_s"]
    for r in rows:
        r["ratio_vs_gym"] = r["steps_per_s"] / base

    # The kernel: OneHotStep against the dense reference, same tables, same B.
    kernel_rows = []
    label, mdp = next(iter(maps.items()))
    for B in args.batch_sizes:
        fast = kernel(mdp, B, args.kernel_steps, args.seed, dense=False)
        slow = kernel(mdp, B, args.kernel_steps, args.seed, dense=True)
        diff = float((fast() - slow()).abs().max())  # the two backward passes must agree
        t_fast, t_dense = timed(fast), timed(slow)
        steps = B * args.kernel_steps
        kernel_rows.append(
            {
                "world": label,
                "B": B,
                "steps": args.kernel_steps,
                "onehot_steps_per_s": steps / t_fast.median,
                "dense_steps_per_s": steps / t_dense.median,
                "speedup": t_dense.median / t_fast.median,
                "max_grad_diff": diff,
                "onehot_times": list(t_fast.times),
                "dense_times": list(t_dense.times),
            }
        )
        print(
            f"  kernel B={B:<6} OneHotStep {steps / t_fast.median:>14,.0f} steps/s, "
            f"dense {steps / t_dense.median:>14,.0f} steps/s",
            flush=True,
        )

    print()
    print(
        format_table(
            rows,
            ["system", "world", "B", "mode", "steps_per_s", "ratio_vs_gym", "spread"],
            {"steps_per_s": ",.0f", "ratio_vs_gym": ".3g", "spread": ".0%"},
        )
    )
    print(
        f"\nratio_vs_gym: steps/s over gymnasium FrozenLake8x8 single env ({base:,.0f} steps/s); "
        "spread: (max - min) / median of the repeats"
    )
    print(
        f"\nForward + backward through {args.kernel_steps} chained steps on {label} "
        "(speedup = dense time / OneHotStep time; max_grad_diff = action-gradient mismatch):"
    )
    print(
        format_table(
            kernel_rows,
            ["world", "B", "onehot_steps_per_s", "dense_steps_per_s", "speedup", "max_grad_diff"],
            {"onehot_steps_per_s": ",.0f", "dense_steps_per_s": ",.0f", "speedup": ".3g", "max_grad_diff": ".1e"},
        )
    )
    for msg in skipped:
        print(msg)

    profile = None
    if args.profile:
        B = max(args.batch_sizes)
        run = batched(worlds()["FrozenLake8x8"], B, "int", args.horizon, args.seed)
        run()  # warm up
        table, ops = profile_ops(run, 3)
        print(f"\ntorch.profiler, integer path, FrozenLake8x8, B={B}, 3 x {args.horizon} steps:\n{table}")
        profile = {"world": "FrozenLake8x8", "B": B, "mode": "int", "steps": 3 * args.horizon, "top_ops": ops}

    out = Path(args.out)
    payload = {
        "benchmark": "env_throughput",
        "machine": machine_info(),
        "args": vars(args),
        "baseline": "gymnasium FrozenLake8x8 single env",
        "rows": rows,
        "kernel": kernel_rows,
        "skipped": skipped,
        "profile": profile,
    }
    path = write_json(out / "env_throughput.json", payload)
    png = plot(rows, out / "env_throughput.png")
    print(f"\nwrote {path}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
