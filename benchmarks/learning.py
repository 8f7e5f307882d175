"""Learning results: train.py's default command on each world, for several algorithms and seeds.

    python -m benchmarks.learning                      # the README's table (long: tens of minutes)
    python -m benchmarks.learning --suite slippery     # one suite
    python -m benchmarks.learning --smoke              # seconds, for CI

Each run is `train.train(TrainConfig(...))` in this process, with greedy evaluation every
`--eval-every` steps and a stop once greedy success reaches `--stop-at` (so "steps" is the
first evaluation at or above it). Results go to `--out`/learning.json and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from agent.config import TrainConfig
from benchmarks.common import machine_description

# suite -> (label, TrainConfig overrides); every run also gets the algo/estimator variant.
SUITES: dict[str, list[tuple[str, dict]]] = {
    "maps": [
        (name, {"env": name}) for name in ("empty", "four_rooms", "maze", "lava_gap", "cliff", "lake8x8")
    ] + [("FrozenLake8x8", {"env": "FrozenLake-v1", "env_kwargs": ("map_name:8x8", "is_slippery:False")})],
    "slippery": [
        ("FrozenLake8x8-slippery", {"env": "FrozenLake-v1", "env_kwargs": ("map_name:8x8", "is_slippery:True")}),
    ],
    "mazes": [("maze:9x9", {"env": "maze:9x9"})],
}
# suite -> (what a run must reach to count as solved, evaluation episodes). Slippery episodes
# are noisy (success is a coin flip near 0.7), so that score is estimated from more of them;
# maze evaluations are 200 unseen mazes, one episode each.
TARGETS: dict[str, tuple[str, float, int]] = {
    "maps": ("success_rate", 0.99, 200),
    "slippery": ("normalized_score", 0.9, 2000),
    "mazes": ("success_rate", 0.9, 200),
}
VARIANTS: dict[str, dict] = {
    "pathwise": {"algo": "pathwise"},
    "pathwise-st-gs": {"algo": "pathwise", "estimator": "st-gs"},
    "pathwise-sampled-slip": {"algo": "pathwise", "slip_gradient": "sampled"},
    "pathwise-h1": {"algo": "pathwise", "horizon": 1},
    "pathwise-h16": {"algo": "pathwise", "horizon": 16},
    "pathwise-bonus": {"algo": "pathwise", "explore_bonus": 0.05},
    "pathwise-no-value-map": {"algo": "pathwise", "value_map": False},
    "pathwise-entropy-0.03": {"algo": "pathwise", "entropy_coef": 0.03},
    "pathwise-cell-entropy": {"algo": "pathwise", "entropy_over": "cells"},
    "pathwise-no-warmup": {"algo": "pathwise", "actor_warmup": 0},
    "reinforce": {"algo": "reinforce"},
    "ppo": {"algo": "ppo"},
    "ppo-bonus": {"algo": "ppo", "explore_bonus": 0.05},
    "ppo-no-value-map": {"algo": "ppo", "value_map": False},
}


def run_one(suite: str, label: str, overrides: dict, variant: str, seed: int, args, runs_dir: Path) -> dict:
    from train import train

    metric, target, episodes = TARGETS[suite]
    cfg = TrainConfig(
        **overrides, **VARIANTS[variant], seed=seed, total_timesteps=args.steps, eval_every=args.eval_every,
        eval_episodes=args.eval_episodes or episodes, stop_at_success=args.stop_at, wandb_mode="disabled",
        progress=False, runs_dir=str(runs_dir), run_name=f"{label.replace(':', '')}__{variant}__{seed}",
    )
    if args.smoke:
        cfg = replace(cfg, num_envs=64, horizon=8)
    start = time.time()
    final = train(cfg)
    return {
        "world": label, "variant": variant, "seed": seed,
        "steps": final["global_step"], "wall_clock_s": time.time() - start,
        "success_rate": final["success_rate"], "normalized_score": final["normalized_score"],
        "solved": final[metric] >= target, "target": f"{metric} >= {target}",
    }


def optima(overrides: dict, gamma: float) -> dict | None:
    """The world's optimal discounted return from the start, under its time limit (the normalised
    score's denominator) and without one; None for procedural mazes (one optimum per maze)."""
    from agent.factory import build_world
    from envs import MazeSpec, value_iteration

    world = build_world(TrainConfig(**overrides))
    if isinstance(world, MazeSpec):
        return None
    return {"time_limit": world.max_episode_steps,
            "time_limited": value_iteration(world, gamma, horizon=world.max_episode_steps).optimal_return,
            "untruncated": value_iteration(world, gamma).optimal_return}


def table(rows: list[dict]) -> str:
    """Medians over seeds per (world, variant)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["world"], r["variant"]), []).append(r)
    lines = ["| world | learner | seeds at target | greedy success (median) | normalised score (median) "
             "| env steps (median) | wall-clock s (median) |", "|---|---|---|---|---|---|---|"]
    for (world, variant), rs in groups.items():
        med = lambda k, rs=rs: statistics.median(r[k] for r in rs)  # noqa: E731
        lines.append(
            f"| {world} | {variant} | {sum(r['solved'] for r in rs)}/{len(rs)} | {med('success_rate'):.1%} "
            f"| {med('normalized_score'):.3f} | {med('steps'):,.0f} | {med('wall_clock_s'):.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                   default=["pathwise", "pathwise-st-gs", "reinforce", "ppo"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2_000_000, help="env-step budget per run")
    p.add_argument("--eval-every", type=int, default=100_000)
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="evaluation episodes (default: 200; 2000 for the noisy slippery suite)")
    p.add_argument("--stop-at", type=float, default=0.99,
                   help="stop once greedy success reaches this (the slippery optimum is far below it)")
    p.add_argument("--out", default="docs/benchmarks", help="directory for the results")
    p.add_argument("--name", default=None,
                   help="file stem of the results (default: learning_SUITE, or learning for all suites)")
    p.add_argument("--smoke", action="store_true", help="tiny budgets, one map, one seed (CI)")
    args = p.parse_args(argv)
    if args.smoke:
        args.suite, args.seeds, args.steps, args.eval_every, args.eval_episodes = "maps", [0], 2048, 1024, 8
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(machine_description())
    rows, optimum = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for suite in suites:
            worlds = SUITES[suite][:1] if args.smoke else SUITES[suite]
            for label, overrides in worlds:
                optimum[label] = optima(overrides, TrainConfig.gamma)
                print(json.dumps({"world": label, "optimum": optimum[label]}), flush=True)
                for variant in args.variants:
                    for seed in args.seeds:
                        r = run_one(suite, label, overrides, variant, seed, args, Path(tmp))
                        rows.append(r)
                        print(json.dumps(r), flush=True)
    md = table(rows)
    print(md)
    name = args.name or ("learning" if args.suite == "all" else f"learning_{args.suite}")
    payload = {"machine": machine_description(), "args": vars(args), "optima": optimum, "runs": rows}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (out / f"{name}.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
