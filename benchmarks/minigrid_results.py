"""The Minigrid benchmark's results: rows of runs merged from run directories and earlier results
files, and summarised per env and learner on the evaluation points every learner had."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks.common import fail
from benchmarks.minigrid_sb3 import SB3_UPDATE_FRAMES


def on_grid(row: dict, eval_every: int, early: bool = False) -> int:
    """The frames at which a run reached the target (its whole budget if it never did), rounded up
    to the points at which every learner evaluated: multiples of `eval_every`, and with `early`
    also 1,024, 2,048, 4,096, ... below it, SB3's early points, which train.py's runs share."""
    if row["frames_to_target"] is None:
        return row["frames"]
    if early:
        from agent.run.trainer import next_eval_step

        return next_eval_step(row["frames_to_target"] - 1, eval_every, SB3_UPDATE_FRAMES)
    return -(-row["frames_to_target"] // eval_every) * eval_every


def evaluated_early(rows: list[dict], eval_every: int) -> bool:
    """Whether every SB3 run among `rows` evaluated before `eval_every` frames too (its rows since
    1a1c674; train.py's always did): if one did not, frames are compared on the coarse grid alone."""
    return all(r.get("curve") and r["curve"][0][0] < eval_every for r in rows if r["learner"].startswith("sb3"))


def known_median(values: list[float | None]) -> float | None:
    """The median, or None when any value is unknown (a median of the known ones would flatter)."""
    return None if any(v is None for v in values) else statistics.median(values)


def learning_ms(row: dict) -> float | None:
    """Milliseconds a frame of the training less its evaluations (None where either is unknown)."""
    if row.get("train_s") is None or row.get("eval_s") is None:
        return None
    return 1000 * (row["train_s"] - row["eval_s"]) / row["frames"]


def summarise(rows: list[dict], target: float, eval_every: int) -> tuple[list[dict], list[dict]]:
    """Per (env, learner): seeds solved and medians; per learner: envs solved on every seed."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["env"], r["learner"]), []).append(r)
    early = {env: evaluated_early([r for r in rows if r["env"] == env], eval_every) for env in {e for e, _ in groups}}
    per_env = [
        {
            "env": env,
            "learner": learner,
            "class": rs[0]["class"],
            "seeds solved": f"{sum(r['success_rate'] >= target for r in rs)}/{len(rs)}",
            "all seeds": all(r["success_rate"] >= target for r in rs),
            "success (median)": statistics.median(r["success_rate"] for r in rs),
            "return (median)": statistics.median(r["mean_return"] for r in rs),
            # On the points every learner evaluated at (`on_grid`): train.py's runs evaluate after
            # 1, 2, 4, ... of their own updates. Runs that never reached the target count as their
            # whole budget: an upper bound.
            "frames to target (median)": round(statistics.median(on_grid(r, eval_every, early[env]) for r in rs)),
            # Training only, without the test episodes: to the target's evaluation, or the whole budget
            # (rows stored before rows kept it have none).
            "train s (median)": known_median([r.get("train_s") for r in rs]),
            "of which eval s (median)": known_median([r.get("eval_s") for r in rs]),
            # The learning's cost: training less evaluations, a frame.
            "learning ms a frame (median)": known_median([learning_ms(r) for r in rs]),
            # A run made in parts has no one wall-clock (None).
            "wall-clock s (median)": known_median([r["wall_clock_s"] for r in rs]),
        }
        for (env, learner), rs in groups.items()
    ]
    learners: dict[str, list[dict]] = {}
    for e in per_env:
        learners.setdefault(e["learner"], []).append(e)
    totals = [
        {
            "learner": name,
            "class": es[0]["class"],
            "envs": len(es),
            "solved on every seed": sum(e["all seeds"] for e in es),
        }
        for name, es in sorted(learners.items())
    ]
    return per_env, totals


def restore_rows(files: tuple[str, ...], runs_dir: Path) -> None:
    """Each run of the results `files` as a finished row in `runs_dir`, where it has none of its own."""
    for file in files:
        try:
            runs = json.loads(Path(file).read_text())["runs"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(f"--rows-from {file}: not a results file of this benchmark ({e}); give one it wrote")
        for r in runs:
            run_dir = runs_dir / f"{r['env']}__{r['learner']}__{r['seed']}"
            if not (run_dir / "row.json").exists():
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "row.json").write_text(json.dumps(r, indent=2))
