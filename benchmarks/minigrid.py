"""Minigrid: our learners beside stable-baselines3's PPO with rl-baselines3-zoo's settings.

    python -m benchmarks.minigrid --split tuning --learners ppo sb3-ppo --seeds 0
    python -m benchmarks.minigrid --envs MiniGrid-DoorKey-5x5-v0 --seeds 0 1 2
    python -m benchmarks.minigrid --smoke                      # seconds, for CI

Each run trains until its first evaluation with a greedy success rate of at least `--target` (0.95,
as SB3's EvalCallback threshold is used) or `--frames` env steps (500k), evaluating every
`--eval-every` frames on `--eval-episodes` greedy episodes. The policy kept is the best evaluated;
it is then scored on `--test-episodes` greedy episodes on seeds no evaluation used, with 95%
intervals. Each row keeps `train_s`, the training's own seconds (to the evaluation that reached the
target, or the whole budget), apart from the test's, and `eval_s`, its evaluations' part of them
(every learner also evaluates after 1, 2, 4, ... updates: train.py's of its B x T frames, SB3's of
1,024). The learners compared in one command run side by side, `--workers` at a time. A run writes
its row to RUNS_DIR/NAME/row.json and is not repeated: a long suite is run in parts, over sessions,
and merged by running the command again. A run of ours that a command left unfinished (stopped by a
signal) goes on from its checkpoint in the next command, with its replay if it kept one; its env
copies start new episodes there, and its row counts the parts (`segments`). Its `train_s` adds the
parts' seconds, and is None when a part was killed before it could say how long it ran.

Learners and their information class: `benchmarks.minigrid_learners`.

The suite's halves are fixed (`TUNING`, `HELD_OUT`): tune on the first only.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmarks.common import (
    DEFAULT_OUT,
    STARTED_AT,
    eval_seconds,
    fail,
    format_table,
    machine_info,
    parse_args,
    provenance,
    pyplot,
    run_header,
    write_json,
)
from benchmarks.minigrid_learners import CLASS, OURS, Learner
from benchmarks.minigrid_results import restore_rows, summarise
from benchmarks.minigrid_sb3 import SB3_DQN, TEST_KEYS, ZOO_ENVS, ZOO_PPO, train_sb3

# Fixed before any tuning; each half has an easy, a key-and-door, a lava and a larger env.
TUNING = (
    "MiniGrid-Empty-8x8-v0",
    "MiniGrid-DoorKey-5x5-v0",
    "MiniGrid-FourRooms-v0",
    "MiniGrid-LavaGapS7-v0",
    "MiniGrid-SimpleCrossingS9N1-v0",
    "MiniGrid-Unlock-v0",
)
HELD_OUT = (
    "MiniGrid-Empty-Random-6x6-v0",
    "MiniGrid-DoorKey-8x8-v0",
    "MiniGrid-LavaCrossingS9N1-v0",
    "MiniGrid-MultiRoom-N2-S4-v0",
    "MiniGrid-KeyCorridorS3R1-v0",
    "MiniGrid-Dynamic-Obstacles-6x6-v0",
)
SPLITS = {"tuning": TUNING, "held-out": HELD_OUT, "all": TUNING + HELD_OUT}


@dataclass(frozen=True)
class Budget:
    frames: int
    target: float
    eval_every: int
    eval_episodes: int
    test_episodes: int


def run_one(env_id: str, learner: str, seed: int, budget: Budget, runs_dir: str) -> dict[str, Any] | None:
    """One run in this (worker) process, or its stored row when it has finished before; None when
    another process is running it now (two commands on one --runs-dir leave each other's runs alone)."""
    import torch

    from agent.run.rundir import RunDirError, RunLock

    torch.set_num_threads(1)
    run_dir = Path(runs_dir) / f"{env_id}__{learner}__{seed}"
    if (run_dir / "row.json").exists():
        return stored_row(run_dir, learner)
    try:  # held for the whole run; beside the run directory, which an unfinished run's restart removes
        running = RunLock(Path(runs_dir) / ".running" / run_dir.name).acquire()
    except RunDirError:
        return None
    try:
        if (run_dir / "row.json").exists():  # finished by another process since the first look
            return stored_row(run_dir, learner)
        start = time.time()
        row = (train_sb3 if learner.startswith("sb3") else train_ours)(env_id, learner, seed, budget, run_dir)
        row |= {
            "env": env_id,
            "learner": learner,
            "class": CLASS[learner],
            "seed": seed,
            # This call's: the whole run's only when it ran in one part.
            "wall_clock_s": time.time() - start if row.get("segments", 1) == 1 else None,
            # Rows of one suite may come from several sessions: each names the code that made it.
            "git_commit": STARTED_AT["git_commit"],
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "row.json").write_text(json.dumps(row, indent=2))
        return row
    finally:
        running.release()


def stored_row(run_dir: Path, learner: str) -> dict[str, Any]:
    row = json.loads((run_dir / "row.json").read_text())
    if "curve" not in row and not learner.startswith("sb3"):  # a row stored before rows kept their curves
        row["curve"] = eval_curve(run_dir)
    return row


# Beside an unfinished run of ours: its training seconds so far, over the parts (`segments`) it ran in.
CLOCK = "benchmark_clock.json"


def our_config(env_id: str, learner: str, seed: int, budget: Budget, run_dir: Path):
    """The TrainConfig of one of our runs: train.py's learner with its defaults and `OURS` flags,
    stopping at the target."""
    from agent.run.config import TrainConfig

    return TrainConfig(
        env=env_id,
        **OURS[learner],
        seed=seed,
        total_timesteps=budget.frames,
        eval_every=budget.eval_every,
        eval_episodes=budget.eval_episodes,
        stop_at_success=budget.target,
        wandb_mode="disabled",
        progress=False,
        runs_dir=str(run_dir.parent),
        run_name=run_dir.name,
    )


def train_ours(env_id: str, learner: str, seed: int, budget: Budget, run_dir: Path) -> dict[str, Any]:
    """train.py's learner with its defaults, stopping at the target; the kept policy scored on the
    test episodes by agent.evaluate. A run that an earlier command left unfinished goes on from
    its checkpoint (`segments` counts the parts)."""
    from agent.evaluate import evaluate_checkpoint
    from agent.run.checkpoint import LATEST
    from agent.run.trainer import train

    cfg = our_config(env_id, learner, seed, budget, run_dir)
    clock = {"train_s": 0.0, "segments": 0, "running": False}
    if (run_dir / CLOCK).exists() and (run_dir / LATEST).exists():
        clock = json.loads((run_dir / CLOCK).read_text())
        # The budget's flags apply to the stored config; the rest is the run's own.
        given = {"total_timesteps", "eval_every", "eval_episodes", "stop_at_success"}
        cfg, clock["lost"] = dataclasses.replace(cfg, resume=str(run_dir)), clock.get("lost") or clock["running"]
    else:  # nothing to go on from (or a run of code that kept no clock): start over
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        given = set()
    # A part that ends without closing its clock (a hard kill) leaves its seconds unknown: "lost".
    clock |= {"segments": clock["segments"] + 1, "running": True}
    (run_dir / CLOCK).write_text(json.dumps(clock))
    start = time.time()
    final = train(cfg, given)
    clock |= {"train_s": clock["train_s"] + time.time() - start, "running": False}
    (run_dir / CLOCK).write_text(json.dumps(clock))
    if final.get("interrupted"):
        raise KeyboardInterrupt(f"{run_dir.name} was interrupted")
    if final.get("failed"):  # its row is not written, so the next call runs it again
        raise RuntimeError(f"{run_dir.name}: the env failed (see its output above)")
    curve = eval_curve(run_dir)
    reached = [step for step, success, _ in curve if success >= budget.target]
    # The test episodes of seed + EVAL_SEED_OFFSET["test"], + 1, ...: the same ones the SB3 run plays.
    test = evaluate_checkpoint(run_dir, episodes=budget.test_episodes, device="cpu")
    return {
        "frames": final["global_step"],
        "frames_to_target": reached[0] if reached else None,
        "kept_step": final["kept_step"],
        # The training's own time, up to the evaluation that reached the target; unknown when a part was killed.
        "train_s": None if clock.get("lost") else clock["train_s"],
        "eval_s": None if clock.get("lost") else eval_seconds(run_dir),
        "segments": clock["segments"],
        "curve": curve,
        **{k: test[k] for k in TEST_KEYS},
    }


def eval_curve(run_dir: Path) -> list[list[float]]:
    """[frames, greedy success rate, mean return] of each of a run's evaluations."""
    from agent.run.logger import read_metrics

    return [
        [r["global_step"], r["eval/success_rate"], r["eval/mean_return"]]
        for r in read_metrics(run_dir)
        if "eval/success_rate" in r
    ]


def plot_curves(rows: list[dict], target: float, out: Path) -> list[Path]:
    """One figure per env, docs/figures/minigrid_ENV.png: each run's greedy success rate at its
    evaluations against frames, a colour per learner and a line per seed."""
    from agent.gumbel_figures import save_figure

    plt = pyplot()
    if plt is None:
        return []
    out.mkdir(parents=True, exist_ok=True)
    colours = {name: f"C{i}" for i, name in enumerate(CLASS)}
    paths = []
    for env in dict.fromkeys(r["env"] for r in rows):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        shown: set[str] = set()
        for r in (r for r in rows if r["env"] == env and r.get("curve")):
            frames, success = [c[0] for c in r["curve"]], [c[1] for c in r["curve"]]
            label = None if r["learner"] in shown else f"{r['learner']} ({r['class']})"
            shown.add(r["learner"])
            ax.plot(frames, success, color=colours[r["learner"]], marker=".", label=label, alpha=0.8)
        ax.axhline(target, color="grey", lw=0.8, ls="--")
        ax.set(title=env, xlabel="frames (env steps)", ylabel="greedy success rate", ylim=(-0.03, 1.03))
        ax.legend(fontsize=8, loc="lower right")
        paths.append(save_figure(fig, out / f"minigrid_{env.removeprefix('MiniGrid-').removesuffix('-v0')}.png"))
    return paths


@dataclass
class Args:
    split: Literal["tuning", "held-out", "all"] = "tuning"
    """Which half of the suite (fixed before tuning; tune on `tuning` only)."""
    envs: tuple[str, ...] | None = None
    """Only these Minigrid ids (of the suite or any other)."""
    learners: tuple[Learner, ...] = ("model", "ppo", "sb3-ppo")
    """Learners."""
    seeds: tuple[int, ...] = (0,)
    """Seeds of every (env, learner)."""
    frames: int = 500_000
    """Env steps a run may take at most."""
    target: float = 0.95
    """Greedy success rate at which a run stops, and which counts as solved."""
    eval_every: int = 20_480
    """Frames between evaluations."""
    eval_episodes: int = 64
    """Greedy episodes per evaluation."""
    test_episodes: int = 1000
    """Greedy episodes on which the kept policy is scored at the end."""
    workers: int = 2
    """Runs at a time, one process and torch thread each."""
    runs_dir: str = "runs/minigrid"
    """Where the runs go; a finished run there is reused, so the suite resumes."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON and table."""
    figures: str | None = "docs/figures"
    """Directory for the learning-curve figure of each env (None: none)."""
    name: str | None = None
    """File stem (default minigrid_SPLIT)."""
    smoke: bool = False
    """One env, one seed, a tiny budget (what CI runs)."""
    collect: bool = False
    """Train nothing: write the results of the runs of this command that have finished in
    --runs-dir (a suite part-way through, between sessions)."""
    rows_from: tuple[str, ...] = ()
    """Results files (JSON) of earlier commands: each run in them counts as finished in --runs-dir
    where that has no row of its own (runs from sessions whose run directories are gone)."""


COLUMNS = [
    "env",
    "learner",
    "class",
    "seeds solved",
    "success (median)",
    "return (median)",
    "frames to target (median)",
    "train s (median)",
    "of which eval s (median)",
    "learning ms a frame (median)",
    "wall-clock s (median)",
]


def write_results(args: Args, name: str, rows: list[dict], planned: int, budget: Budget, machine, stamp) -> str:
    """NAME.json and NAME.md from the runs finished so far (of `planned`); returns the tables."""
    rows = sorted(rows, key=lambda r: (r["env"], r["learner"], r["seed"]))
    per_env, totals = summarise(rows, args.target, budget.eval_every)
    md = format_table(totals, ["learner", "class", "envs", "solved on every seed"], {}) + "\n\n"
    md += format_table(per_env, COLUMNS, {})
    write_json(
        Path(args.out) / f"{name}.json",
        stamp
        | run_header(machine, args)
        | {
            "budget": dataclasses.asdict(budget),
            "zoo_ppo": {"n_envs": ZOO_ENVS, **ZOO_PPO},
            "sb3_dqn": {"n_envs": 1, **SB3_DQN},
            "runs finished": f"{len(rows)}/{planned}",
            "totals": totals,
            "envs": per_env,
            "runs": rows,
        },
    )
    (Path(args.out) / f"{name}.md").write_text(md + "\n")
    return md


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.minigrid", __doc__)
    if min(args.workers, args.frames, args.eval_every, args.eval_episodes, args.test_episodes) < 1:
        fail("--workers, --frames, --eval-every, --eval-episodes and --test-episodes must be at least 1")
    try:
        import minigrid  # noqa: F401
    except ImportError:
        fail("Minigrid is not installed: pip install -e '.[bench]'")
    for learner in (name for name in args.learners if name.startswith("sb3")):
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            fail(f"--learners {learner} needs stable-baselines3: pip install -e '.[bench]'")
    env_ids = list(args.envs or SPLITS[args.split])
    from envs.blackbox import open_black_box

    for env_id in env_ids:  # refused here in one line, not in a worker's traceback
        try:
            spec = open_black_box(env_id)
        except ValueError as e:
            fail("--envs " + str(e).removeprefix("--env "))
        if not spec.minigrid:
            fail(f"--envs {env_id}: not a Minigrid env; this benchmark stops at a success rate, which Minigrid defines")
    budget = Budget(args.frames, args.target, args.eval_every, args.eval_episodes, args.test_episodes)
    if args.smoke:
        env_ids, args.seeds = ["MiniGrid-Empty-5x5-v0"], (0,)
        budget = Budget(2048, args.target, 1024, 4, 8)
    machine, stamp = machine_info(), provenance("benchmarks.minigrid", argv)
    print(
        f"machine: CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"{args.workers} workers x 1 torch thread",
        flush=True,
    )
    tasks = [(e, learner, seed) for e in env_ids for learner in args.learners for seed in args.seeds]
    restore_rows(args.rows_from, Path(args.runs_dir))
    name = args.name or f"minigrid_{args.split}"
    rows: list[dict] = []
    if args.collect:
        done = [t for t in tasks if (Path(args.runs_dir) / "__".join(map(str, t)) / "row.json").exists()]
        if not done:
            fail(f"--collect: none of these runs has finished in --runs-dir {args.runs_dir}")
        rows = [run_one(*t[:3], budget, args.runs_dir) for t in done]
        print(write_results(args, name, rows, len(tasks), budget, machine, stamp))
        write_figures(args, rows)
        return 0
    md = ""
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(run_one, *task, budget, args.runs_dir): task for task in tasks}
        for f in as_completed(futures):
            if (row := f.result()) is None:
                print(f"{'__'.join(map(str, futures[f]))}: another process is running it; skipped", flush=True)
                continue
            rows.append(row)
            print(json.dumps(row), flush=True)
            # Written after every run, so a suite stopped part-way leaves what it has finished.
            md = write_results(args, name, rows, len(tasks), budget, machine, stamp)
    print(md)
    write_figures(args, rows)
    return 0


def write_figures(args: Args, rows: list[dict]) -> None:
    if args.figures and not args.smoke:
        for path in plot_curves(rows, args.target, Path(args.figures)):
            print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
