"""Generalisation: train.py's default command on every world of the suite, for each learner and seed.

    python -m benchmarks.generalisation                          # the held-out half, 3 learners x 3 seeds
    python -m benchmarks.generalisation --split tuning --algos pathwise --seeds 0
    python -m benchmarks.generalisation --families maze spiral --set explore_starts=0
    python -m benchmarks.generalisation --smoke                  # seconds, for CI

Each run is `agent.run.trainer.train(TrainConfig(...))` with the world's fields (`benchmarks.suite`), the
learner's `--algo`, the seed and `--steps`, in a worker process (`--workers` at a time, one
torch thread each). What is reported is the policy a user gets: the kept (best-evaluated)
checkpoint, scored exactly on the tabular core (normalised score (R - R_uniform) / (R* - R_uniform)
and success probability, under the time limit), the env steps until an evaluation first reached
the target and the seconds until then (TensorBoard's wall times, from the run's first event), and
the wall-clock of the whole `train()` call. A world counts as solved by a run
when the kept policy's normalised score is at least `--target` (0.95).

Every row names its learner's information class (`agent.learning.information`): samples (PPO, REINFORCE),
simulator (the default pathwise learner), model (`--set critic=oracle`). `--value-iteration` adds
the model class's anchor: value iteration on the world's tables, its greedy policy scored the same
way, and the seconds it took (no env steps: it reads the whole tables instead).
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmarks.common import (
    DEFAULT_OUT,
    fail,
    format_table,
    machine_info,
    parse_args,
    parse_set,
    provenance,
    run_header,
    write_json,
)
from benchmarks.suite import BUILTINS, HELD_OUT, SUITE, TUNING, SuiteWorld, worlds

ALGOS = ("pathwise", "reinforce", "ppo")


# The tables of a generalisation results file: totals per (split, learner), then one row per world.
TOTAL_COLUMNS = ["split", "algo", "class", "worlds", "solved on every seed", "share", "median score"]
WORLD_COLUMNS = [
    "world",
    "algo",
    "class",
    "seeds solved",
    "score (min)",
    "score (median)",
    "success (median)",
    "env steps to target (median)",
    "s to target (median)",
    "wall-clock s (median)",
]
FORMATS = {
    "score (min)": ".3f",
    "score (median)": ".3f",
    "success (median)": ".1%",
    "env steps to target (median)": ",.0f",
    "wall-clock s (median)": ".3g",
    "s to target (median)": ".3g",
    "share": ".1%",
    "median score": ".3f",
}


def seconds_to_target(run_dir: Path, target: float) -> float | None:
    """Seconds from the run's first TensorBoard event (its start, after the imports) to the first
    evaluation whose normalised score reached `target`, by the events' wall times; None if none did."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    if "eval/normalized_score" not in events.Tags()["scalars"]:
        return None
    hit = next((e for e in events.Scalars("eval/normalized_score") if e.value >= target), None)
    return None if hit is None else hit.wall_time - events.FirstEventTimestamp()


def run_one(
    world: SuiteWorld,
    algo: str,
    seed: int,
    steps: int,
    overrides: dict[str, Any],
    runs_dir: str,
    smoke: bool,
    target: float,
    commit: str | None,
) -> dict[str, Any]:
    """One train() call in this (worker) process; the row of the results table. A run is reused
    if its directory holds a finished one; each row names the commit its run was made at."""
    import torch

    torch.set_num_threads(1)
    from agent.learning.information import information_class
    from agent.run.config import TrainConfig
    from agent.run.logger import read_metrics
    from agent.run.trainer import train

    name = f"{world.name}__{algo}__{seed}"
    cfg = TrainConfig(
        **world.config_fields(),
        algo=algo,
        seed=seed,
        total_timesteps=steps,
        wandb_mode="disabled",
        progress=False,
        runs_dir=runs_dir,
        run_name=name,
        **overrides,
    )
    if smoke:
        cfg = TrainConfig(**{**cfg.to_dict(), "num_envs": 64, "horizon": 4, "eval_every": 1024, "eval_episodes": 8})
    run_dir = Path(runs_dir) / name
    done = run_dir / "final_eval.json"
    if done.exists() and "normalized_score" in json.loads(done.read_text()):  # finished: not repeated
        final = json.loads(done.read_text())
        wall = final.get("process_s")
    else:
        if run_dir.exists():  # an unfinished run from an interrupted sweep starts over
            import shutil

            shutil.rmtree(run_dir)
        start = time.time()
        final = train(cfg)
        if final.get("interrupted"):  # stopped by a signal: not a result; the next invocation redoes it
            raise KeyboardInterrupt(f"{name} was interrupted at step {final['global_step']}")
        wall = time.time() - start
        final["process_s"] = wall
        final["git_commit"] = commit
        (run_dir / "final_eval.json").write_text(json.dumps(final, indent=2))
    evals = [r for r in read_metrics(run_dir) if "eval/normalized_score" in r]
    reached = [r["global_step"] for r in evals if r["eval/normalized_score"] >= target]
    return {
        "world": world.name,
        "family": world.family,
        "split": world.split,
        "algo": algo,
        "class": information_class(TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))),
        "seed": seed,
        "normalized_score": final["normalized_score"],
        "exact_success_rate": final["exact_success_rate"],
        "kept_step": final["kept_step"],
        "first_step_at_target": reached[0] if reached else None,
        "seconds_to_target": seconds_to_target(run_dir, target),
        "steps": final["global_step"],
        "wall_clock_s": wall,
        "final_policy_score": final["final_policy"]["normalized_score"],
        "run_git_commit": final.get("git_commit"),  # None: made before runs recorded it
        "config": json.loads((run_dir / "config.json").read_text()),
    }


def value_iteration_row(world: SuiteWorld, target: float) -> dict[str, Any]:
    """Value iteration on the world's whole tables (the model class): its greedy policy scored
    exactly as a run's kept policy is, and the seconds it took, as a row of the results."""
    import torch

    from agent.run.config import TrainConfig
    from agent.run.resolve import build_world
    from envs.oracle import normalized_score as score_of
    from envs.oracle import optimal_time_limited_return, policy_metrics, uniform_policy, value_iteration

    cfg = TrainConfig(**world.config_fields())
    mdp = build_world(cfg)
    start = time.perf_counter()
    result = value_iteration(mdp, cfg.gamma)
    seconds = time.perf_counter() - start
    greedy = torch.nn.functional.one_hot(result.policy, mdp.num_actions).double()  # (S, A)
    T = mdp.max_episode_steps
    m = policy_metrics(mdp, greedy, cfg.gamma, T)
    uniform = policy_metrics(mdp, uniform_policy(mdp), cfg.gamma, T)["return"]
    score = float(score_of(m["return"], uniform, optimal_time_limited_return(mdp, cfg.gamma, T)))
    return {
        "world": world.name,
        "family": world.family,
        "split": world.split,
        "algo": "value-iteration",
        "class": "model",
        "seed": 0,
        "normalized_score": score,
        "exact_success_rate": float(m["success"]),
        "kept_step": 0,
        "first_step_at_target": 0 if score >= target else None,
        "seconds_to_target": seconds if score >= target else None,
        "steps": 0,
        "wall_clock_s": seconds,
        "final_policy_score": score,
        "iterations": result.iterations,
    }


def summarise(rows: list[dict], target: float) -> tuple[list[dict], list[dict]]:
    """Per (world, algo): medians and seeds solved; per (split, algo): worlds solved on every seed."""
    per_world: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        per_world.setdefault((r["world"], r["algo"]), []).append(r)
    world_rows = []
    for (world, algo), rs in per_world.items():
        world_rows.append(
            {
                "world": world,
                "family": rs[0]["family"],
                "split": rs[0]["split"],
                "algo": algo,
                "class": rs[0]["class"],
                "seeds solved": f"{sum(r['normalized_score'] >= target for r in rs)}/{len(rs)}",
                "all seeds": all(r["normalized_score"] >= target for r in rs),
                "score (min)": min(r["normalized_score"] for r in rs),
                "score (median)": statistics.median(r["normalized_score"] for r in rs),
                "success (median)": statistics.median(r["exact_success_rate"] for r in rs),
                # Env steps until an evaluation first reached the target (runs that never did count as
                # the whole budget, so the median is an upper bound where some seeds missed).
                "env steps to target (median)": statistics.median(r["first_step_at_target"] or r["steps"] for r in rs),
                "s to target (median)": statistics.median(
                    r["wall_clock_s"] if r.get("seconds_to_target") is None else r["seconds_to_target"] for r in rs
                ),
                "wall-clock s (median)": statistics.median(r["wall_clock_s"] for r in rs),
            }
        )
    totals: dict[tuple[str, str], list[dict]] = {}
    for w in world_rows:
        totals.setdefault((w["split"], w["algo"]), []).append(w)
    total_rows = [
        {
            "split": split,
            "algo": algo,
            "class": ws[0]["class"],
            "worlds": len(ws),
            "solved on every seed": sum(w["all seeds"] for w in ws),
            "share": sum(w["all seeds"] for w in ws) / len(ws),
            "median score": statistics.median(w["score (median)"] for w in ws),
        }
        for (split, algo), ws in sorted(totals.items())
    ]
    return world_rows, total_rows


@dataclass
class Args:
    split: Literal["tuning", "held-out", "all", "builtin"] = HELD_OUT
    """Which worlds: a half of the suite, both, or the package's built-in maps."""
    families: tuple[str, ...] | None = None
    """Only these families (default: all)."""
    worlds: tuple[str, ...] | None = None
    """Only these world names (benchmarks/suite.py)."""
    algos: tuple[Literal["pathwise", "reinforce", "ppo"], ...] = ALGOS
    """Learners."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of every (world, learner)."""
    steps: int = 2_000_000
    """Env-step budget per run."""
    target: float = 0.95
    """Normalised score that counts as solved."""
    set: tuple[str, ...] = ()
    """FIELD=VALUE TrainConfig overrides for every run (experiments; the results record them)."""
    workers: int = 2
    """Runs at a time, one process and torch thread each."""
    runs_dir: str = "runs/generalisation"
    """Where the runs' directories go (a finished run there is reused, not repeated)."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON and table."""
    name: str | None = None
    """File stem (default generalisation_SPLIT)."""
    smoke: bool = False
    """Two worlds, one seed, a tiny budget (what CI runs)."""
    value_iteration: bool = False
    """Add value iteration on each world's tables (the model class's anchor) as a learner."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.generalisation", __doc__)
    if args.workers < 1 or args.steps < 1:
        fail(f"--workers {args.workers} and --steps {args.steps} must be at least 1")
    overrides = parse_set(args.set, "--set")
    chosen = worlds(None if args.split == "all" else args.split, args.families)
    if args.worlds:
        known = {w.name for w in SUITE + BUILTINS}
        if unknown := set(args.worlds) - known:
            fail(f"--worlds {' '.join(sorted(unknown))}: unknown; see benchmarks/suite.py")
        chosen = [w for w in chosen if w.name in args.worlds]
    if args.smoke:
        chosen, args.seeds, args.steps = [worlds(TUNING, ["corridor"])[0], worlds(TUNING, ["gymnasium"])[2]], (0,), 4096
    machine, stamp = machine_info(), provenance("benchmarks.generalisation", argv)  # read before the runs start
    commit = stamp["git_commit"]  # the code the runs use
    print(
        f"machine: CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"{args.workers} workers x 1 torch thread",
        flush=True,
    )
    tasks = [(w, algo, seed) for w in chosen for algo in args.algos for seed in args.seeds]
    rows = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [
            pool.submit(run_one, w, algo, seed, args.steps, overrides, args.runs_dir, args.smoke, args.target, commit)
            for w, algo, seed in tasks
        ]
        for f in futures:
            r = f.result()
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "config"}), flush=True)
    if args.value_iteration:
        rows += [
            value_iteration_row(w, args.target) for w in chosen if not w.config_fields()["env"].startswith("maze:")
        ]
    world_rows, total_rows = summarise(rows, args.target)
    md = format_table(total_rows, TOTAL_COLUMNS, FORMATS) + "\n\n" + format_table(world_rows, WORLD_COLUMNS, FORMATS)
    print(md)
    name = args.name or f"generalisation_{args.split}"
    write_json(
        Path(args.out) / f"{name}.json",
        stamp
        | run_header(machine, args)
        | {"overrides": overrides, "totals": total_rows, "worlds": world_rows, "runs": rows},
    )
    (Path(args.out) / f"{name}.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
