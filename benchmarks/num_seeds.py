"""Many seeds in one process: `train.py --num-seeds N` against N sequential `train.py --seed K`.

    python -m benchmarks.num_seeds                 # FrozenLake 8x8, 8 seeds x 1M env steps, 3 repeats
    python -m benchmarks.num_seeds --smoke         # tiny budget, for CI

Both sides train the same N seeds for the same env steps each, as a user runs them: whole
`python train.py` processes timed from launch to exit, wandb in its default mode with no
credentials (offline), train.py's default thread count, a private HOME. "sequential" launches
one process per seed, one after another; "one process" launches `--num-seeds N` once. The two
alternate within each repeat, so a busy moment touches both. Reported: the median whole-process
seconds of each and their ratio, and the kept policies' exact normalised scores of every seed
(the group's agents draw other noise than the separate runs, so the scores are compared as
samples, not seed by seed).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import DEFAULT_OUT, fail, format_table, machine_info, parse_args, provenance, write_json
from benchmarks.threads import ROOT, user_env


def run(args: list[str], work: Path) -> float:
    """One train.py process with `args`; its seconds from launch to exit."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "train.py", *args, "--no-progress", "--runs-dir", str(work / "runs")],
        cwd=ROOT,
        env=user_env(work / "home"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"train.py {' '.join(args)} exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return seconds


def scores(run_dirs: list[Path]) -> list[float]:
    return [json.loads((d / "final_eval.json").read_text())["normalized_score"] for d in run_dirs]


@dataclass
class Args:
    env: str = "lake8x8"
    """World, as train.py's --env (default: deterministic FrozenLake 8x8)."""
    seeds: int = 8
    """N: seeds 0 .. N-1 on both sides."""
    steps: int = 1_000_000
    """Env steps of each seed."""
    repeats: int = 3
    """Repeats of each side; medians are reported."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON."""
    smoke: bool = False
    """A tiny budget, 2 seeds, one repeat (what CI runs)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.num_seeds", __doc__)
    if args.smoke:
        args.seeds, args.steps, args.repeats = 2, 2048, 1
    if args.seeds < 2 or args.steps < 1 or args.repeats < 1:
        fail(f"--seeds {args.seeds} must be at least 2, --steps {args.steps} and --repeats {args.repeats} at least 1")
    machine, stamp = machine_info(), provenance("benchmarks.num_seeds", argv)
    print(f"machine: CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}", flush=True)
    common = ["--env", args.env, "--total-timesteps", str(args.steps)]
    if args.smoke:  # seconds: what CI checks is that both sides run and are reported
        common += "--num-envs 64 --horizon 8 --eval-every 1024 --eval-episodes 16 --wandb-mode disabled".split()
    times: dict[str, list[float]] = {"sequential": [], "one process": []}
    kept: dict[str, list[float]] = {"sequential": [], "one process": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "home").mkdir()
        for r in range(args.repeats):
            total = 0.0
            for seed in range(args.seeds):
                total += run([*common, "--seed", str(seed), "--run-name", f"r{r}-seed{seed}"], work)
            times["sequential"].append(total)
            kept["sequential"] += scores([work / "runs" / f"r{r}-seed{seed}" for seed in range(args.seeds)])
            times["one process"].append(
                run([*common, "--num-seeds", str(args.seeds), "--run-name", f"r{r}-group"], work)
            )
            kept["one process"] += scores(
                [work / "runs" / f"r{r}-group" / f"seed-{seed}" for seed in range(args.seeds)]
            )
            print(
                f"repeat {r}: sequential {times['sequential'][-1]:.1f} s, one process {times['one process'][-1]:.1f} s"
            )
    rows = [
        {
            "how": how,
            "seconds (median)": statistics.median(times[how]),
            "runs solved (score >= 0.95)": f"{sum(s >= 0.95 for s in kept[how])}/{len(kept[how])}",
            "median score": statistics.median(kept[how]),
        }
        for how in times
    ]
    ratio = statistics.median(times["sequential"]) / statistics.median(times["one process"])
    print(format_table(rows, None, {"seconds (median)": ".1f", "median score": ".3f"}))
    print(f"one process is {ratio:.2f}x faster than {args.seeds} sequential processes")
    write_json(
        Path(args.out) / ("num_seeds_smoke.json" if args.smoke else "num_seeds.json"),
        stamp
        | {
            "machine": machine,
            "args": vars(args),
            "train_args": common,
            "speedup": ratio,
            "rows": rows,
            "seconds": times,
            "scores": kept,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
