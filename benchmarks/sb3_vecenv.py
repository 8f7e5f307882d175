"""SB3's PPO on two vectorised FrozenLakes: gymnasium's own env in SB3's DummyVecEnv, and the
batched torch env through `envs.sb3.SB3VecEnv`. The learner is the same (SB3's PPO, same settings,
same seeds), so the difference is the env alone.

    python -m benchmarks.sb3_vecenv                  # deterministic FrozenLake 8x8, 3 seeds
    python -m benchmarks.sb3_vecenv --smoke          # seconds, for CI (skipped without SB3)

Settings: n_steps 512, batch 64, ent_coef 0.01 (tuned for this lake), `--envs` copies, a budget
of `--steps` env steps. Reported per run: the whole `learn()` wall-clock, its env steps per
second, and whether the greedy policy then reaches the goal. Both kinds alternate seed by seed
in this one process with one torch thread, so the comparison is side by side.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DEFAULT_OUT, format_table, machine_info, parse_args, provenance, quiet_sb3, write_json

LAKE = {"map_name": "8x8", "is_slippery": False}


def make(kind: str, n: int, seed: int):
    if kind == "gymnasium DummyVecEnv":
        from stable_baselines3.common.env_util import make_vec_env

        return make_vec_env("FrozenLake-v1", n_envs=n, seed=seed, env_kwargs=LAKE)
    from envs import BatchedGridWorld
    from envs.sb3 import SB3VecEnv

    return SB3VecEnv(BatchedGridWorld("FrozenLake-v1", n, obs_mode="index", seed=seed, env_kwargs=LAKE))


def greedy_success(model) -> bool:
    import gymnasium as gym

    env = gym.make("FrozenLake-v1", **LAKE)
    obs, _ = env.reset(seed=0)
    for _ in range(env.spec.max_episode_steps):
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            return reward > 0
    return False


@dataclass
class Args:
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of SB3's PPO."""
    envs: tuple[int, ...] = (8, 64)
    """Vectorised copies."""
    steps: int = 100_000
    """Env steps per run."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON."""
    smoke: bool = False
    """One seed, a tiny budget (what CI runs)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.sb3_vecenv", __doc__)
    torch.set_num_threads(1)
    machine, stamp = machine_info(), provenance("benchmarks.sb3_vecenv", argv)
    print(
        f"machine: CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, 1 torch thread", flush=True
    )
    try:
        from stable_baselines3 import PPO
    except ImportError:
        print("stable-baselines3 is not installed (pip install -e '.[bench]'): nothing to compare", file=sys.stderr)
        return 0
    if args.smoke:
        args.seeds, args.steps, args.envs = (0,), 4096, (8,)
    rows = []
    for seed in args.seeds:
        for n, kind in ((n, k) for n in args.envs for k in ("gymnasium DummyVecEnv", "batched torch env (SB3VecEnv)")):
            env = make(kind, n, seed)
            model = quiet_sb3(
                PPO("MlpPolicy", env, n_steps=512, batch_size=64, ent_coef=0.01, seed=seed, device="cpu", verbose=0)
            )
            start = time.perf_counter()
            model.learn(args.steps)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "env": kind,
                    "seed": seed,
                    "envs": n,
                    "steps": model.num_timesteps,
                    "seconds": seconds,
                    "steps_per_s": model.num_timesteps / seconds,
                    "solved": greedy_success(model),
                }
            )
            print(rows[-1], flush=True)
            env.close()
    summary = []
    for n, kind in dict.fromkeys((r["envs"], r["env"]) for r in rows):
        rs = [r for r in rows if r["env"] == kind and r["envs"] == n]
        summary.append(
            {
                "env": kind,
                "copies": n,
                "seeds solved": f"{sum(r['solved'] for r in rs)}/{len(rs)}",
                "learn() s (median)": statistics.median(r["seconds"] for r in rs),
                "env steps/s (median)": statistics.median(r["steps_per_s"] for r in rs),
            }
        )
    for s in summary:  # against DummyVecEnv with as many copies
        base = next(b for b in summary if b["copies"] == s["copies"])["learn() s (median)"]
        s["speed-up"] = base / s["learn() s (median)"]
    print(format_table(summary, None, {"learn() s (median)": ".1f", "env steps/s (median)": ",.0f", "speed-up": ".2f"}))
    write_json(
        Path(args.out) / ("sb3_vecenv_smoke.json" if args.smoke else "sb3_vecenv.json"),
        stamp
        | {
            "machine": machine,
            "args": vars(args),
            "summary": summary,
            "runs": rows,
            "ppo": {"n_steps": 512, "batch_size": 64, "ent_coef": 0.01},
            "np": np.__version__,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
