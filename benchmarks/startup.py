"""What the default command pays before its first update, as a user launches it.

    python -m benchmarks.startup              # 5 launches each, medians
    python -m benchmarks.startup --smoke      # 1 launch each, for CI

Side by side in one run: `python -c "import torch"` (the floor no torch program escapes), and
`python train.py` with its defaults until its first update's row lands in metrics.jsonl, with
wandb in its default mode (auto: offline here, no credentials) and disabled. Each launch is a
fresh process with a private HOME and no wandb credentials, as on a new user's machine. The
in-process breakdown (imports, world, envs, reference returns, networks, logger with wandb, first
update) comes from timing the same calls train.py makes, in a separate process.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import DEFAULT_OUT, format_table, machine_info, parse_args, provenance, write_json

ROOT = Path(__file__).resolve().parents[1]

_PHASES = """
import time, json, sys
t = {"start": time.perf_counter()}
import torch
t["import torch"] = time.perf_counter()
import train
from agent.run.config import TrainConfig
from agent.run.resolve import build_world, resolve_defaults
t["import train.py's modules"] = time.perf_counter()
from agent.run.scoring import reference_returns
from agent.run.factory import (build_env, build_eval_env, build_learner, build_networks)
from agent.run.logger import RunLogger
from agent.learning.rollout import EpisodeStats
cfg = TrainConfig(wandb_mode=sys.argv[1], progress=False)
world = build_world(cfg)
cfg = resolve_defaults(cfg, world)
t["world"] = time.perf_counter()
device = torch.device("cpu")
env = build_env(cfg, device, world=world, maze_pool=cfg.maze_pool, explore_starts=cfg.explore_starts)
eval_env = build_eval_env(cfg, device, "validation", world=world)
t["envs"] = time.perf_counter()
reference = reference_returns(eval_env, cfg.gamma)
t["reference returns (exact optimum, random policy)"] = time.perf_counter()
policy, critic = build_networks(cfg, env.observation_shape, env.A, device)
learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
t["networks, learner"] = time.perf_counter()
run_dir = __import__("pathlib").Path(sys.argv[2])
run_dir.mkdir(parents=True, exist_ok=True)
logger = RunLogger(cfg, run_dir)
t["logger (TensorBoard, wandb " + sys.argv[1] + ")"] = time.perf_counter()
obs, _ = env.reset()
learner.update(env, obs, 1.0, EpisodeStats())
t["first update"] = time.perf_counter()
logger.finish()
names = list(t)
print(json.dumps({n: t[n] - t[p] for p, n in zip(names, names[1:])}))
"""


def clean_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    return env | {"HOME": home, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def time_import_torch(home: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], env=clean_env(home), check=True)
    return time.perf_counter() - start


def time_to_first_update(mode: str, home: str, work: str) -> float:
    # A run directory of its own each time: the killed run's wandb process may still be closing
    # its wandb run in the last one.
    run = Path(work) / "runs" / f"r{time.monotonic_ns()}"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "train.py",
            "--wandb-mode",
            mode,
            "--no-progress",
            "--runs-dir",
            str(Path(work) / "runs"),
            "--run-name",
            run.name,
        ],
        cwd=ROOT,
        env=clean_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 0):
            if proc.poll() is not None:
                raise RuntimeError(f"train.py exited with {proc.returncode} before its first update")
            time.sleep(0.005)
        return time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()


@dataclass
class Args:
    repeats: int = 5
    """Launches of each kind; medians are reported."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON."""
    smoke: bool = False
    """One launch each (what CI runs)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.startup", __doc__)
    repeats = 1 if args.smoke else args.repeats
    machine, stamp = machine_info(), provenance("benchmarks.startup", argv)
    print(f"machine: CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}", flush=True)
    times: dict[str, list[float]] = {
        "import torch": [],
        "train.py to its first update, wandb auto": [],
        "train.py to its first update, wandb disabled": [],
    }
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as work:  # a wandb process may still write
        home = str(Path(work) / "home")
        Path(home).mkdir()
        for _ in range(repeats):  # interleaved, so a busy moment touches all three
            times["import torch"].append(time_import_torch(home))
            times["train.py to its first update, wandb auto"].append(time_to_first_update("auto", home, work))
            times["train.py to its first update, wandb disabled"].append(time_to_first_update("disabled", home, work))
        phases = subprocess.run(
            [sys.executable, "-c", _PHASES, "auto", str(Path(work) / "phases")],
            cwd=ROOT,
            env=clean_env(home),
            capture_output=True,
            text=True,
            check=True,
        )
    import json

    breakdown = json.loads(phases.stdout.strip().splitlines()[-1])
    rows = [{"what": k, "seconds (median)": statistics.median(v), "runs": len(v)} for k, v in times.items()]
    floor = rows[0]["seconds (median)"]
    for r in rows:
        r["beyond import torch"] = r["seconds (median)"] - floor
    print(format_table(rows, None, {"seconds (median)": ".2f", "beyond import torch": ".2f"}))
    print(format_table([{"phase": k, "seconds": v} for k, v in breakdown.items()], None, {"seconds": ".3f"}))
    write_json(
        Path(args.out) / ("startup_smoke.json" if args.smoke else "startup.json"),
        stamp | {"machine": machine, "rows": rows, "times": times, "breakdown": breakdown},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
