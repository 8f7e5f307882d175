"""End-to-end training speed: env steps per second of whole learner updates, and where the time goes.

    python -m benchmarks.train_throughput                       # 3 learners x B = 1024, 4096, 16384
    python -m benchmarks.train_throughput --learners pathwise --batch-sizes 1024 --profile
    python -m benchmarks.train_throughput --learners pathwise --variants "" actor_steps=1
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

`--profile` also runs `torch.profiler` over `--profile-updates` pathwise updates at the first
batch size and prints (and stores) the operators with the most self CPU time, plus the share of
the update spent in the actor pass (rollout + backward + optimiser) versus the critic fit — the
breakdown behind the gap to the 1M steps/s target in README's Benchmarks section.

Results go to `--out`/train_throughput.json.
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

LEARNERS = ("pathwise", "reinforce", "ppo")


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


def critic_share(learner, update, updates: int) -> float:
    """Fraction of update time spent in `fit_critic_and_report` (timed by wrapping it)."""
    spent = [0.0]
    inner = learner.fit_critic_and_report

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    learner.fit_critic_and_report = timed
    try:
        start = time.perf_counter()
        for _ in range(updates):
            update()
        total = time.perf_counter() - start
    finally:
        learner.fit_critic_and_report = inner
    return spent[0] / total


@dataclass
class Args(common.Common):
    learners: tuple[Literal["pathwise", "reinforce", "ppo"], ...] = LEARNERS
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
    """Also profile pathwise updates at the first batch size (torch.profiler)."""
    profile_updates: int = 5
    """Updates profiled."""
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
                share = critic_share(learner, update, max(2, t.calls))
                row = {
                    "learner": algo,
                    "variant": variant or "defaults",
                    "world": args.env,
                    "B": B,
                    "T": args.horizon,
                    "update_ms": t.median * 1e3,
                    "steps_per_s": cfg.num_seeds * B * args.horizon / t.median,  # every member's B envs
                    "critic_fit_share": share,
                    "spread": t.spread,
                    "timing": t,
                    "config": cfg.to_dict(),
                }
                rows.append(row)
                print(
                    f"  {algo:<10} {row['variant']:<16} B={B:<6} {row['steps_per_s']:>12,.0f} steps/s  "
                    f"{row['update_ms']:8.1f} ms/update  critic fit {share:.0%}",
                    flush=True,
                )

    columns = ["learner", "variant", "world", "B", "T", "update_ms", "steps_per_s", "critic_fit_share"]
    print()
    print(common.format_table(rows, columns, {"update_ms": ".1f", "steps_per_s": ",.0f", "critic_fit_share": ".0%"}))
    payload = {"machine": common.machine_info(), "args": vars(args), "rows": rows}
    if args.profile:
        _, _, update = build("pathwise", args.env, args.batch_sizes[0], args.horizon, args.seed)
        for _ in range(2):
            update()  # warm up, as the timings above
        table, ops = common.profile_ops(update, args.profile_updates, rows=15)
        print(f"\npathwise, B={args.batch_sizes[0]}, {args.profile_updates} updates, torch.profiler by self CPU time:")
        print(table)
        payload["profile"] = {
            "learner": "pathwise",
            "B": args.batch_sizes[0],
            "updates": args.profile_updates,
            "top_ops": ops,
        }
    path = common.write_json(f"{args.out}/train_throughput.json", payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
