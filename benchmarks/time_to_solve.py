"""Time to solve: wall-clock and env steps until the greedy policy reaches the goal every time.

    python -m benchmarks.time_to_solve                 # 2 worlds x 4 learners x 3 seeds (long)
    python -m benchmarks.time_to_solve --worlds FrozenLake8x8 --learners pathwise sb3-ppo --seeds 0
    python -m benchmarks.time_to_solve --worlds FrozenLake8x8 --learners train.py sb3-ppo-tuned
    python -m benchmarks.time_to_solve --smoke         # seconds, for CI

Worlds (both deterministic, with one start cell, so a greedy policy plays one episode over and
over): `FrozenLake8x8` (gymnasium `FrozenLake-v1`, `map_name="8x8"`, `is_slippery=False`) and
`maze` (the built-in maze map, 11x11 cells with its border walls, gymnasium id
`GumbelGrid/Maze-v0`).

Learners:
- `pathwise` (default estimator), `reinforce`, `ppo`: `agent.run.trainer.train(TrainConfig(...))` in this
  process with train.py's defaults (`--num-envs` x `--horizon` = 4,096 env steps per update),
  `stop_at_success=1.0`, greedy evaluation of `--eval-episodes` episodes every `--eval-every`
  steps, wandb disabled, run directories in a temporary folder.
- `train.py`: the whole `python train.py --env ... --seed S --stop-at-success 1.0` process as a
  new user runs it: a subprocess with a new user's environment (a private HOME, no thread
  variables, no wandb login, so wandb logs offline) and every other flag at train.py's default
  (one thread, evaluation every 200k steps).
  Its wall-clock runs from launch to exit: interpreter, imports, wandb, training, files.
- `sb3-ppo`: stable-baselines3 `PPO("MlpPolicy", env, seed=s, device="cpu")` with SB3's
  defaults (it one-hot encodes the Discrete observation) on a `make_vec_env` of `--sb3-envs`
  DummyVecEnv copies (8 x SB3's n_steps=2048 = 16,384 env steps per update). A callback
  plays `--sb3-eval-episodes` greedy episodes (`model.predict(obs, deterministic=True)`) on a
  separate env at the start of each rollout once `--eval-every` steps have passed since the last
  check, i.e. right after an update, and stops training at 100% success. Needs the `[bench]` extra.
- `sb3-ppo-tuned`: the same with n_steps=512, batch_size=64, ent_coef=0.01 (8 x 512 = 4,096 env
  steps per update), checked after every update, so it stops at the first update that solves.
  SB3 runs are timed in this process after SB3's imports.

Every run stops at 100% greedy success or after the update that crosses `--max-steps`; a run that
hits the cap is reported as not solved. "Env steps" are those the evaluated policy was trained on
(a multiple of the update size). "Wall-clock" times the whole call for every learner: building
envs and networks, training, the periodic evaluations, and for ours the closing checkpoint and
final evaluation that `agent.run.trainer.train` always does (its own `wall_clock_s`, the loop alone, is kept
in the JSON as `train_loop_s`). Medians count an unsolved seed as infinitely slow, so a median is
"not solved" when half the seeds or more were not. The ratio columns are each SB3 learner's median
over this learner's: above 1 means this learner solved the world sooner.

All learners run in this one process with the same `torch.set_num_threads(--threads)` (default 1)
and with denormal flushing on (train.py turns it on; here it is on from the start, so the order of
the runs does not change SB3's arithmetic). Results go to `--out`/time_to_solve.json and .md.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shlex
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from benchmarks.common import (
    DEFAULT_OUT,
    apply_threads,
    fail,
    format_table,
    load_warning,
    machine_description,
    machine_info,
    parse_args,
    quiet_sb3,
    write_json,
)

SB3_MISSING = "stable-baselines3 not installed: pip install '.[bench]'"
OURS = ("pathwise", "reinforce", "ppo")
LEARNERS = (*OURS, "train.py", "sb3-ppo", "sb3-ppo-tuned")
# SB3 PPO settings tuned for deterministic FrozenLake 8x8 (issue 16's reference); sb3-ppo keeps SB3's defaults.
SB3_TUNED = {"n_steps": 512, "batch_size": 64, "ent_coef": 0.01}
REFERENCES = ("sb3-ppo", "sb3-ppo-tuned")  # the ratio columns: a reference's median over each learner's


@dataclass(frozen=True)
class World:
    """One world, as train.py's TrainConfig fields and as a gymnasium id for SB3."""

    train: dict[str, Any]
    """TrainConfig overrides (env, env_kwargs)."""
    gym_id: str
    """`gymnasium.make` id (`GumbelGrid/...` ids need `import envs`)."""
    gym_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for `gymnasium.make`."""


WORLDS: dict[str, World] = {
    "FrozenLake8x8": World(
        {"env": "FrozenLake-v1", "env_kwargs": ("map_name:8x8", "is_slippery:False")},
        "FrozenLake-v1",
        {"map_name": "8x8", "is_slippery": False},
    ),
    "maze": World({"env": "maze"}, "GumbelGrid/Maze-v0"),
}


# ----------------------------------------------------------------------------- our learners
def run_ours(world: str, learner: str, seed: int, args: Args, runs_dir: Path) -> dict:
    """One `agent.run.trainer.train` run with a stop at 100% greedy success."""
    from agent.run.config import TrainConfig
    from agent.run.trainer import train

    cfg = TrainConfig(
        **WORLDS[world].train,
        algo=learner,
        seed=seed,
        total_timesteps=args.max_steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        stop_at_success=1.0,
        wandb_mode="disabled",
        progress=False,
        device="cpu",
        runs_dir=str(runs_dir),
        run_name=f"{world}__{learner}__{seed}",
    )
    if args.smoke:
        cfg = replace(cfg, num_envs=64, horizon=8)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its "done: ... saved in <temp dir>" line
        final = train(cfg)
    wall = time.perf_counter() - start
    return {
        "steps": int(final["global_step"]),
        "wall_clock_s": wall,
        "train_loop_s": float(final["wall_clock_s"]),
        "success_rate": float(final["success_rate"]),
    }


def run_process(world: str, seed: int, args: Args, runs_dir: Path) -> dict:
    """`python train.py` as a user types it (train.py's defaults, `--stop-at-success 1.0`), timed
    from launch to exit: interpreter start, imports, wandb, training, evaluations, closing files."""
    import subprocess
    import sys

    from benchmarks.threads import ROOT, user_env

    name = f"{world}__train.py__{seed}"
    flags = ["--env", WORLDS[world].train["env"]]
    if kwargs := WORLDS[world].train.get("env_kwargs"):
        flags += ["--env-kwargs", *kwargs]
    flags += ["--seed", str(seed), "--stop-at-success", "1.0", "--total-timesteps", str(args.max_steps)]
    if args.smoke:
        flags += ["--num-envs", "64", "--horizon", "8", "--eval-every", str(args.eval_every)]
    flags += ["--runs-dir", str(runs_dir), "--run-name", name]
    start = time.perf_counter()
    home = runs_dir / f"home-{name}"
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *flags],
        env=user_env(home),  # a new user's shell: no thread variables, no wandb login (so offline)
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"train.py exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    final = json.loads((runs_dir / name / "final_eval.json").read_text())
    return {
        "steps": int(final["global_step"]),
        "wall_clock_s": wall,
        "train_loop_s": float(final["wall_clock_s"]),
        "success_rate": float(final["success_rate"]),
        "command": shlex.join(["python", "train.py", *flags]),
    }


# ----------------------------------------------------------------------------- stable-baselines3
def sb3_version() -> str | None:
    """The installed stable-baselines3 version, or None when it cannot be imported."""
    try:
        import stable_baselines3
    except ImportError:
        return None
    return stable_baselines3.__version__


def greedy_success(model, env, episodes: int, seed: int) -> float:
    """Fraction of `episodes` greedy episodes of `model` on the single `env` that reach the goal."""
    wins = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        terminated = truncated = False
        while not (terminated or truncated):
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(int(action))
        # GumbelGrid envs say it in info; FrozenLake pays 1 only at the goal.
        wins += bool(info.get("success", terminated and reward > 0))
    return wins / episodes


def run_sb3(world: str, seed: int, args: Args, tuned: bool = False) -> dict:
    """SB3 PPO with its defaults (or `SB3_TUNED`, checked after every update) until greedy success
    is 100% or `--max-steps` is spent. Timed in this process, after SB3's imports."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    import envs  # noqa: F401  (registers the GumbelGrid/... ids)

    w = WORLDS[world]
    settings = dict(SB3_TUNED) if tuned else {}
    if args.smoke:
        settings["n_steps"] = 64  # smoke: 8 x 64 steps per update
    # The tuned settings solve in a few updates, so they are checked after each (their best case).
    eval_every = settings.get("n_steps", 2048) * args.sb3_envs if tuned else args.eval_every

    class StopAtSuccess(BaseCallback):
        """Greedy check after an update, every `eval_every` steps; stops training at 100%."""

        def __init__(self, eval_env: gym.Env) -> None:
            super().__init__()
            self.eval_env = eval_env
            self.next_eval = eval_every
            self.solved_at: int | None = None

        def _on_rollout_start(self) -> None:
            # The policy has just been updated on `num_timesteps` env steps.
            if self.num_timesteps >= self.next_eval:
                self.next_eval += eval_every
                rate = greedy_success(self.model, self.eval_env, args.sb3_eval_episodes, seed + 10_000)
                if rate >= 1.0:
                    self.solved_at = self.num_timesteps

        def _on_step(self) -> bool:
            return self.solved_at is None  # False ends `learn` at the first step of this rollout

    start = time.perf_counter()
    venv = make_vec_env(w.gym_id, n_envs=args.sb3_envs, seed=seed, env_kwargs=w.gym_kwargs)
    eval_env = gym.make(w.gym_id, **w.gym_kwargs)
    model = quiet_sb3(PPO("MlpPolicy", venv, seed=seed, device="cpu", **settings))
    callback = StopAtSuccess(eval_env)
    model.learn(total_timesteps=args.max_steps, callback=callback)
    if callback.solved_at is None:  # the cap: score the policy that training ended with
        rate = greedy_success(model, eval_env, args.sb3_eval_episodes, seed + 10_000)
        steps = model.num_timesteps
        if rate >= 1.0:
            callback.solved_at = steps
    else:
        rate, steps = 1.0, callback.solved_at
    wall = time.perf_counter() - start
    venv.close()
    eval_env.close()
    return {"steps": int(steps), "wall_clock_s": wall, "train_loop_s": None, "success_rate": rate, "sb3": settings}


def run(world: str, learner: str, seed: int, args: Args, runs_dir: Path) -> dict:
    """One timed run of any learner: steps, wall_clock_s, train_loop_s, success_rate."""
    if learner.startswith("sb3-ppo"):
        return run_sb3(world, seed, args, tuned=learner == "sb3-ppo-tuned")
    if learner == "train.py":
        return run_process(world, seed, args, runs_dir)
    return run_ours(world, learner, seed, args, runs_dir)


def warm_up(world: str, learner: str, args: Args, runs_dir: Path) -> None:
    """One untimed update (512 steps) so that first-call costs fall on no timed run.

    The first run in a process pays about a second of lazy imports and allocations that later
    runs do not; on FrozenLake that is a sizeable share of a solve.
    """
    tiny = replace(args, max_steps=512, eval_every=512, eval_episodes=8, sb3_eval_episodes=1, smoke=True)
    run(world, learner, 1_000_000, tiny, runs_dir / "warm_up")


# ----------------------------------------------------------------------------- summary
def _median_to_solve(rows: list[dict], key: str) -> float:
    """Median of `key` over seeds, an unsolved seed counting as infinite."""
    return statistics.median(r[key] if r["solved"] else math.inf for r in rows)


def summarise(rows: list[dict]) -> list[dict]:
    """Per (world, learner): seeds solved, median env steps and wall-clock, SB3 PPO ratios."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["world"], r["learner"]), []).append(r)
    out = []
    for (world, learner), rs in groups.items():
        out.append(
            {
                "world": world,
                "learner": learner,
                "seeds_solved": sum(r["solved"] for r in rs),
                "seeds": len(rs),
                "env_steps": _median_to_solve(rs, "steps"),
                "wall_clock_s": _median_to_solve(rs, "wall_clock_s"),
            }
        )
    for s in out:
        # {reference: {"wall_clock_s": its median / this one's, "env_steps": ...}}; None where either is unsolved
        s["reference_over_this"] = {}
        for ref in REFERENCES:
            r = next((b for b in out if b["world"] == s["world"] and b["learner"] == ref), None)
            if r is not None:
                s["reference_over_this"][ref] = {
                    key: r[key] / s[key] if math.isfinite(r[key]) and math.isfinite(s[key]) else None
                    for key in ("wall_clock_s", "env_steps")
                }
    return out


def markdown(summary: list[dict], max_steps: int) -> str:
    """The summary as a markdown table; "not solved" where the median run hit the cap."""
    return format_table(table_rows(summary, max_steps))


def table_rows(summary: list[dict], max_steps: int) -> list[dict[str, str]]:
    """The summary's rows as printed (each value a string), for `markdown` and the results page."""

    def num(v: float, fmt: str) -> str:
        return format(v, fmt) if math.isfinite(v) else f"not solved (cap {max_steps:,})"

    def ratio(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    refs = [ref for ref in REFERENCES if any(ref in s["reference_over_this"] for s in summary)]
    rows = []
    for s in summary:
        row = {
            "world": s["world"],
            "learner": s["learner"],
            "seeds solved": f"{s['seeds_solved']}/{s['seeds']}",
            "env steps (median)": num(s["env_steps"], ",.0f"),
            "wall-clock s (median)": num(s["wall_clock_s"], ".1f"),
        }
        for ref in refs:
            r = s["reference_over_this"].get(ref, {})
            row[f"{ref} / this, wall-clock"] = ratio(r.get("wall_clock_s"))
            row[f"{ref} / this, env steps"] = ratio(r.get("env_steps"))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- main
@dataclass
class Args:
    worlds: tuple[Literal["FrozenLake8x8", "maze"], ...] = tuple(WORLDS)
    """Worlds to solve."""
    learners: tuple[Literal["pathwise", "reinforce", "ppo", "train.py", "sb3-ppo", "sb3-ppo-tuned"], ...] = LEARNERS
    """Learners to time (the sb3 ones need the [bench] extra)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds."""
    max_steps: int = 1_000_000
    """Env-step cap per run; a run that reaches it is not solved."""
    eval_every: int = 50_000
    """Env steps between greedy checks, for every learner."""
    eval_episodes: int = 64
    """Greedy episodes per check for our learners."""
    sb3_eval_episodes: int = 5
    """Greedy episodes per check for SB3 PPO (the worlds are deterministic with one start, so one
    would do)."""
    sb3_envs: int = 8
    """DummyVecEnv copies for SB3 PPO."""
    threads: int = 1
    """torch.set_num_threads for every learner."""
    out: str = DEFAULT_OUT
    """Directory for time_to_solve.json/.md."""
    smoke: bool = False
    """Tiny budgets (2,048 steps, smaller updates), first world and seed only, no warm-up: seconds, for CI;
    the numbers mean nothing."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.time_to_solve", __doc__)
    for name in ("max_steps", "eval_every", "eval_episodes", "sb3_eval_episodes", "sb3_envs", "threads"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    apply_threads(args.threads)
    if args.smoke:
        args.worlds, args.seeds = args.worlds[:1], args.seeds[:1]
        args.max_steps, args.eval_every, args.eval_episodes = 2048, 1024, 8
    torch.set_flush_denormal(True)  # what agent.run.trainer sets; on from the start for every learner

    print(machine_description())
    print(f"every learner runs with torch.set_num_threads({args.threads}) in this process")
    if warning := load_warning():
        print(warning)
    learners = list(args.learners)
    sb3 = [name for name in learners if name.startswith("sb3-ppo")]
    version = sb3_version() if sb3 else None
    if sb3 and version is None:
        print(SB3_MISSING)
        learners = [name for name in learners if name not in sb3]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in args.worlds:
            for learner in learners:
                if not args.smoke:  # a smoke's numbers mean nothing: no time spent making them fair
                    warm_up(world, learner, args, Path(tmp))
            for seed in args.seeds:  # seeds outer, learners inner: load drifts hit all alike
                for learner in learners:
                    r = run(world, learner, seed, args, Path(tmp))
                    r = {
                        "world": world,
                        "learner": learner,
                        "seed": seed,
                        **r,
                        "solved": r["success_rate"] >= 1.0,
                        "torch_threads": torch.get_num_threads(),
                    }
                    rows.append(r)
                    print(
                        " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()),
                        flush=True,
                    )

    summary = summarise(rows)
    md = markdown(summary, args.max_steps)
    print(md)
    out = Path(args.out)
    note = (
        f"{machine_description()}; every learner with torch.set_num_threads({args.threads}); "
        "wall-clock times the whole call (setup, training, evaluations)"
    )
    write_json(
        out / "time_to_solve.json",
        {
            "machine": machine_info(),
            "note": note,
            "stable_baselines3": version,
            "args": vars(args),
            "runs": rows,
            "summary": summary,
            "table": table_rows(summary, args.max_steps),
        },
    )
    (out / "time_to_solve.md").write_text(note + "\n\n" + md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
