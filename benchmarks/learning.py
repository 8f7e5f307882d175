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
VARIANTS: dict[str, dict] = {
    "pathwise": {"algo": "pathwise"},
    "pathwise-st-gs": {"algo": "pathwise", "estimator": "st-gs"},
    "pathwise-sampled-slip": {"algo": "pathwise", "slip_gradient": "sampled"},
    "pathwise-h1": {"algo": "pathwise", "horizon": 1},
    "reinforce": {"algo": "reinforce"},
    "ppo": {"algo": "ppo"},
}


def run_one(label: str, overrides: dict, variant: str, seed: int, args, runs_dir: Path) -> dict:
    from train import train

    cfg = TrainConfig(
        **overrides, **VARIANTS[variant], seed=seed, total_timesteps=args.steps, eval_every=args.eval_every,
        eval_episodes=args.eval_episodes, stop_at_success=args.stop_at, wandb_mode="disabled",
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
        "solved": final["success_rate"] >= args.stop_at,
    }


def table(rows: list[dict]) -> str:
    """Medians over seeds per (world, variant)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["world"], r["variant"]), []).append(r)
    lines = ["| world | learner | seeds solved | greedy success (median) | normalised score (median) "
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
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--stop-at", type=float, default=0.99, help="stop once greedy success reaches this")
    p.add_argument("--out", default="docs/benchmarks", help="directory for learning.json / learning.md")
    p.add_argument("--smoke", action="store_true", help="tiny budgets, one map, one seed (CI)")
    args = p.parse_args(argv)
    if args.smoke:
        args.suite, args.seeds, args.steps, args.eval_every, args.eval_episodes = "maps", [0], 2048, 1024, 8
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(machine_description())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for suite in suites:
            worlds = SUITES[suite][:1] if args.smoke else SUITES[suite]
            for label, overrides in worlds:
                for variant in args.variants:
                    for seed in args.seeds:
                        r = run_one(label, overrides, variant, seed, args, Path(tmp))
                        rows.append(r)
                        print(json.dumps(r), flush=True)
    md = table(rows)
    print(md)
    name = "learning" if args.suite == "all" else f"learning_{args.suite}"
    payload = {"machine": machine_description(), "args": vars(args), "runs": rows}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (out / f"{name}.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
