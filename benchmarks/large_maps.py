"""Large drawn maps: what one update and one evaluation cost, in time and memory, as the side grows.

    python -m benchmarks.large_maps            # open rooms 64, 128 and 256 a side, pathwise and ppo
    python -m benchmarks.large_maps --smoke    # one small room, for CI

Each (side, learner) runs in a fresh process (peak RSS only grows) at the default B and T: it
builds the run's world, env, networks and learner as `agent.run.trainer` does, takes three updates and
one evaluation (sampled episodes and the exact one, the reference returns included), and reports
the median update's seconds, the evaluation's seconds, the time limit, and the process's peak
resident memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import DEFAULT_OUT, format_table, machine_info, parse_args, provenance, write_json

_PROBE = """
import json, resource, statistics, sys, time, torch
from agent.run.config import TrainConfig
from agent.run.resolve import resolve
from agent.run.factory import build_env, build_eval_env, build_learner, build_networks
from agent.learning.rollout import EpisodeStats
from agent.run.scoring import evaluate, reference_returns
path, algo = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
torch.set_flush_denormal(True)
t0 = time.perf_counter()
cfg, world = resolve(TrainConfig(env=path, algo=algo, wandb_mode="disabled"))
device = torch.device("cpu")
env = build_env(cfg, device, world=world, explore_starts=cfg.explore_starts)
eval_env = build_eval_env(cfg, device, "validation", world=world)
policy, critic = build_networks(cfg, env.observation_shape, env.A, device)
learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
setup = time.perf_counter() - t0
obs, stats, updates = env.reset()[0], EpisodeStats(), []
for _ in range(3):
    t = time.perf_counter()
    obs, _ = learner.update(env, obs, 1.0, stats)
    updates.append(time.perf_counter() - t)
t = time.perf_counter()
reference = reference_returns(eval_env, cfg.gamma)
result = evaluate(policy, eval_env, gamma=cfg.gamma, reference=reference)
evaluation = time.perf_counter() - t
print(json.dumps({"algo": algo, "S": env.S, "B": cfg.num_envs, "T": cfg.horizon,
                  "time_limit": env.max_episode_steps, "setup_s": setup,
                  "update_s": statistics.median(updates), "evaluation_s": evaluation,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "score": result["normalized_score"]}))
"""


def room(side: int) -> str:
    """An open room `side` cells a side (walls included), start and goal in opposite corners."""
    rows = ["#" * side] + ["#" + "." * (side - 2) + "#" for _ in range(side - 2)] + ["#" * side]
    rows[1] = "#S" + rows[1][2:]
    rows[-2] = rows[-2][:-2] + "G#"
    return "\n".join(rows) + "\n"


@dataclass
class Args:
    sides: tuple[int, ...] = (64, 128, 256)
    """Room sides to measure."""
    algos: tuple[str, ...] = ("pathwise", "ppo")
    """Learners."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON."""
    smoke: bool = False
    """One 16-cell-a-side room, pathwise only (what CI runs)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.large_maps", __doc__)
    sides, algos = ((16,), ("pathwise",)) if args.smoke else (args.sides, args.algos)
    machine, stamp = machine_info(), provenance("benchmarks.large_maps", argv)
    print(f"machine: CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in sides:
            path = Path(tmp) / f"room{side}.txt"
            path.write_text(room(side))
            for algo in algos:
                proc = subprocess.run(
                    [sys.executable, "-c", _PROBE, str(path), algo],
                    capture_output=True,
                    text=True,
                    cwd=Path(__file__).resolve().parents[1],
                    check=True,
                )
                rows.append({"side": side} | json.loads(proc.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    print(
        format_table(
            rows,
            ["side", "algo", "S", "B", "T", "time_limit", "setup_s", "update_s", "evaluation_s", "peak_rss_mb"],
            {"setup_s": ".2f", "update_s": ".3f", "evaluation_s": ".2f", "peak_rss_mb": ".0f"},
        )
    )
    name = "large_maps_smoke.json" if args.smoke else "large_maps.json"
    write_json(Path(args.out) / name, stamp | {"machine": machine, "args": vars(args), "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
