"""End-to-end training speed: env steps per second of whole learner updates, and where the time goes.

    python -m benchmarks.train_throughput                       # 3 learners x B = 1024, 4096, 16384
    python -m benchmarks.train_throughput --learners pathwise --batch-sizes 1024 --profile
    python -m benchmarks.train_throughput --learners pathwise --variants "" actor_steps=1
    python -m benchmarks.train_throughput --learners model --env MiniGrid-DoorKey-5x5-v0 --batch-sizes 16
    python -m benchmarks.train_throughput --smoke               # seconds, for CI

One update is exactly what `train.py` runs per loop iteration: `learner.update(env, obs, tau,
stats)` on a `BatchedGridWorld` of B envs for `--horizon` steps (policy forward, env steps, the
loss's backward, the optimiser step, and the critic regression every learner does after it).
Steps/s = B * T / (median seconds per update over `--repeats` repeats), times N with
`num_seeds=N` (each of the N agents steps B envs). Networks, env and learner are built by
`agent.run.factory` from a `TrainConfig` with train.py's defaults, so the numbers are train.py's
(less logging and evaluation, which are timed by neither).
`--variants` times other settings side by side in the same run: each is a comma-separated list
of FIELD=VALUE TrainConfig overrides ("" = train.py's defaults).

Each row also has the share of the update spent in its parts (`PARTS`): the critic's fit for every
learner (`critic_fit_share`), and for the model learner (`--learners model`, not run by default)
the model's fit, the imagination and the whole actor-and-critic step as well.

`--profile` also runs `torch.profiler` over `--profile-updates` updates of the first learner at the
first batch size, in the first variant, and prints (and stores) the operators with the most self
CPU time.

Results go to `--out`/`--name`.json (train_throughput.json).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Literal

import torch

from agent.learning.rollout import EpisodeStats
from agent.run.config import TrainConfig
from agent.run.factory import build_env, build_learner, build_networks
from agent.run.resolve import build_world, resolve_defaults
from benchmarks import common

LEARNERS = ("pathwise", "reinforce", "ppo")  # the default; "model" on request


def build(algo: str, env_name: str, B: int, horizon: int, seed: int, overrides: dict | None = None):
    """A learner in train.py's configuration (with `overrides`), and a function running one update of it."""
    cfg = TrainConfig(
        env=env_name,
        algo=algo,
        num_envs=B,
        horizon=horizon,
        seed=seed,
        device="cpu",
        wandb_mode="disabled",
        progress=False,
        **(overrides or {}),
    )
    cfg = resolve_defaults(cfg, build_world(cfg))
    torch.manual_seed(seed)
    env = build_env(cfg, torch.device("cpu"))
    policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
    learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(seed))
    stats = EpisodeStats()
    state = {"obs": env.reset()[0]}

    def update() -> None:
        state["obs"], _ = learner.update(env, state["obs"], cfg.tau, stats)
        stats.pop()

    return cfg, learner, update


# The methods each learner's update is split into (timed by wrapping them), the critic's fit first;
# the model learner's actor's own step is the rest of `train_actor_critic`.
PARTS = {
    "pathwise": ("fit_critic_and_report",),
    "reinforce": ("fit_critic_and_report",),
    "ppo": ("fit_critic_and_report",),
    "model": ("fit_critic", "fit_model", "imagine", "train_actor_critic"),
}


def part_shares(learner, update, updates: int, names: tuple[str, ...]) -> dict[str, float]:
    """Fraction of update time spent in each of `names`, methods of `learner` (a part called from
    another counts in both)."""
    spent = dict.fromkeys(names, 0.0)
    inner = {name: getattr(learner, name) for name in names}

    def timed(name):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner[name](*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return call

    for name in names:
        setattr(learner, name, timed(name))
    try:
        start = time.perf_counter()
        for _ in range(updates):
            update()
        total = time.perf_counter() - start
    finally:
        for name in names:
            delattr(learner, name)  # the class's method again
    return {name: spent[name] / total for name in names}


@dataclass
class Args(common.Common):
    learners: tuple[Literal["pathwise", "reinforce", "ppo", "model"], ...] = LEARNERS
    """Learners to time."""
    batch_sizes: tuple[int, ...] = (1024, 4096, 16384)
    """Numbers of envs B."""
    env: str = "empty"
    """World, as train.py's --env (default: the 9x9 `empty` room)."""
    horizon: int = 16
    """Steps per update T (train.py's)."""
    min_time: float = 1.0
    """Seconds a repeat lasts at least."""
    profile: bool = False
    """Also profile the first learner's updates at the first batch size and variant (torch.profiler)."""
    profile_updates: int = 5
    """Updates profiled."""
    name: str = "train_throughput"
    """File stem of the results JSON."""
    variants: tuple[str, ...] = ("",)
    """Settings timed side by side: each a comma-separated list of FIELD=VALUE TrainConfig
    overrides; "" is train.py's defaults."""


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(Args, argv, "benchmarks.train_throughput", __doc__)
    if args.smoke:
        args.batch_sizes, args.horizon, args.min_time, args.repeats = (64,), 4, 0.01, 2
        args.profile, args.profile_updates = True, 1
    for name in ("repeats", "horizon", "profile_updates"):
        if getattr(args, name) < 1:
            common.fail(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    if min(args.batch_sizes) < 1:
        common.fail(f"--batch-sizes must be at least 1, got {min(args.batch_sizes)}")
    variants = [(v, common.parse_set([x for x in v.split(",") if x], "--variants")) for v in args.variants]
    common.apply_threads(args.threads)

    common.announce_machine()
    torch.set_flush_denormal(True)  # as train.py
    rows = []
    for algo in args.learners:
        for B in args.batch_sizes:
            for variant, overrides in variants:
                cfg, learner, update = build(algo, args.env, B, args.horizon, args.seed, overrides)
                t = common.time_it(update, repeats=args.repeats, warmup=2, min_time=args.min_time)
                shares = part_shares(learner, update, max(2, t.calls), PARTS[algo])
                row = {
                    "learner": algo,
                    "variant": variant or "defaults",
                    "world": args.env,
                    "B": B,
                    "T": args.horizon,
                    "update_ms": t.median * 1e3,
                    "steps_per_s": cfg.num_seeds * B * args.horizon / t.median,  # every member's B envs
                    "critic_fit_share": shares[PARTS[algo][0]],
                    "parts": shares,
                    "spread": t.spread,
                    "timing": t,
                    "config": cfg.to_dict(),
                }
                rows.append(row)
                parts = "  ".join(f"{k} {v:.0%}" for k, v in shares.items())
                print(
                    f"  {algo:<10} {row['variant']:<16} B={B:<6} {row['steps_per_s']:>12,.0f} steps/s  "
                    f"{row['update_ms']:8.1f} ms/update  {parts}",
                    flush=True,
                )

    columns = ["learner", "variant", "world", "B", "T", "update_ms", "steps_per_s", "critic_fit_share"]
    print()
    print(common.format_table(rows, columns, {"update_ms": ".1f", "steps_per_s": ",.0f", "critic_fit_share": ".0%"}))
    payload = {"machine": common.machine_info(), "args": vars(args), "rows": rows}
    if args.profile:
        profiled, first_B, n = args.learners[0], args.batch_sizes[0], args.profile_updates
        _, _, update = build(profiled, args.env, first_B, args.horizon, args.seed, variants[0][1])
        for _ in range(2):
            update()  # warm up, as the timings above
        table, ops = common.profile_ops(update, n, rows=15)
        print(f"\n{profiled}, B={first_B}, {n} updates, torch.profiler by self CPU time:")
        print(table)
        payload["profile"] = {
            "learner": profiled,
            "variant": variants[0][0] or "defaults",
            "B": first_B,
            "updates": n,
            "top_ops": ops,
        }
    path = common.write_json(f"{args.out}/{args.name}.json", payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
