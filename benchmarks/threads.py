"""The thread count a user gets: `train.py --threads N`, alone and with a second run beside it.

    python -m benchmarks.threads              # 3 repeats, medians
    python -m benchmarks.threads --smoke      # tiny budget, for CI
    python -m benchmarks.threads --threads 1 --env lake8x8 --num-envs 4096 --name threads_lake8x8_B4096

Each launch is the user's command as they run it (`python train.py --threads N --total-timesteps
STEPS`, wandb in its default mode with no credentials, a private HOME, no OMP_NUM_THREADS), timed
from launch to exit. "pair" launches two such runs at once (seeds 0 and 1), as a user training two
seeds or running the tests beside a run does, and reports the slower one. SPS is the env steps
per second of the training loop (`charts/SPS` of the last row). Settings are interleaved within
each repeat, so a busy moment touches all of them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import DEFAULT_OUT, fail, format_table, machine_info, parse_args, provenance, write_json

ROOT = Path(__file__).resolve().parents[1]
_DROP = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NETRC")


def user_env(home: Path) -> dict[str, str]:
    """The environment of a new user's shell: no thread variables, no wandb credentials."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP and not k.startswith("WANDB_")}
    return env | {"HOME": str(home)}


def launch(threads: int, seeds: list[int], steps: int, work: Path, extra: tuple[str, ...] = ()) -> list[dict]:
    """Start one train.py per seed at once (with `extra` flags); wait for all -> per run: seconds, SPS."""
    procs = []
    for seed in seeds:
        run = work / f"t{threads}_s{seed}_{time.monotonic_ns()}"
        cmd = [
            sys.executable,
            "train.py",
            "--threads",
            str(threads),
            "--seed",
            str(seed),
            "--total-timesteps",
            str(steps),
            "--no-progress",
            "--runs-dir",
            str(work / "runs"),
            "--run-name",
            run.name,
            *extra,
        ]
        procs.append(
            (
                run.name,
                time.perf_counter(),
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=user_env(work / "home"),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    out = []
    for name, start, proc in procs:
        _, err = proc.communicate()
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"train.py exited with {proc.returncode}: {err.strip()[-300:]}")
        rows = [json.loads(line) for line in (work / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        sps = [r["charts/SPS"] for r in rows if "charts/SPS" in r][-1]
        out.append({"seconds": seconds, "sps": sps})
    return out


@dataclass
class Args:
    threads: tuple[int, ...] = (1, 2)
    """train.py --threads values to compare."""
    steps: int = 1_000_000
    """Env steps per run."""
    repeats: int = 3
    """Repeats of each setting; medians are reported."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON."""
    smoke: bool = False
    """A tiny budget, one repeat, wandb disabled (what CI runs)."""
    env: str | None = None
    """train.py --env (default: train.py's)."""
    num_envs: int | None = None
    """train.py --num-envs B (default: train.py's)."""
    name: str = "threads"
    """Results file name, without .json (the smoke adds _smoke)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.threads", __doc__)
    if min(args.threads) < 1:
        fail(f"--threads {' '.join(map(str, args.threads))}: each must be at least 1")
    extra: tuple[str, ...] = ()
    if args.smoke:  # what CI checks is that every setting runs and is reported: no wandb
        args.steps, args.repeats, extra = 4096, 1, ("--wandb-mode", "disabled")
    if args.env is not None:
        extra += ("--env", args.env)
    if args.num_envs is not None:
        extra += ("--num-envs", str(args.num_envs))
    machine, stamp = machine_info(), provenance("benchmarks.threads", argv)
    print(f"machine: CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}", flush=True)
    settings = [(n, mode) for n in args.threads for mode in ("alone", "pair")]
    runs: dict[str, list[dict]] = {f"{n} thread(s), {mode}": [] for n, mode in settings}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "home").mkdir()
        for _ in range(args.repeats):
            for n, mode in settings:
                result = launch(n, [0] if mode == "alone" else [0, 1], args.steps, work, extra)
                # A pair is done when its slower run is: that is what the user waits for.
                runs[f"{n} thread(s), {mode}"].append(
                    {"seconds": max(r["seconds"] for r in result), "sps": min(r["sps"] for r in result)}
                )
    rows = [
        {
            "setting": k,
            "process seconds (median)": statistics.median(r["seconds"] for r in v),
            "SPS (median)": statistics.median(r["sps"] for r in v),
            "repeats": len(v),
        }
        for k, v in runs.items()
    ]
    print(format_table(rows, None, {"process seconds (median)": ".1f", "SPS (median)": ",.0f"}))
    write_json(
        Path(args.out) / f"{args.name}{'_smoke' if args.smoke else ''}.json",
        stamp | {"machine": machine, "steps": args.steps, "rows": rows, "runs": runs},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
