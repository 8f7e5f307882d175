"""Memory per update: the peak resident memory two updates add, per B x T x (S + observation).

    python -m benchmarks.memory            # the table behind agent.run.factory.memory_estimate
    python -m benchmarks.memory --smoke    # seconds, for CI

Each configuration runs in a fresh process (peak RSS only grows), builds train.py's env and
learner, and takes two updates; the cost per env step and (cell + observation number) is what
`agent.run.factory.memory_estimate` scales, with a margin, to refuse a run that would not fit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import DEFAULT_OUT, format_table, machine_info, parse_args, provenance, write_json

CONFIGS = [  # env, B, T, algo
    ("four_rooms", 1024, 64, "pathwise"),
    ("four_rooms", 4096, 64, "pathwise"),
    ("Taxi-v4", 1024, 64, "pathwise"),
    ("maze:9x9", 1024, 16, "pathwise"),
    ("maze:9x9", 256, 64, "pathwise"),
    ("four_rooms", 4096, 64, "ppo"),
    ("maze:9x9", 1024, 16, "ppo"),
    ("four_rooms", 4096, 64, "reinforce"),
]

_PROBE = """
import json, math, resource, sys, torch
from agent.run.config import TrainConfig
from agent.run.resolve import build_world, resolve_defaults
from agent.run.factory import build_env, build_learner, build_networks
from agent.learning.rollout import EpisodeStats
env_name, B, T, algo = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)
cfg = TrainConfig(env=env_name, num_envs=B, horizon=T, algo=algo)
cfg = resolve_defaults(cfg, build_world(cfg))
env = build_env(cfg, torch.device("cpu"), maze_pool=cfg.maze_pool, explore_starts=cfg.explore_starts)
policy, critic = build_networks(cfg, env.observation_shape, env.A, torch.device("cpu"))
learner = build_learner(cfg, env, policy, critic, torch.Generator().manual_seed(0))
obs, stats = env.reset()[0], EpisodeStats()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
for _ in range(2):
    obs, _ = learner.update(env, obs, 1.0, stats)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
numel = math.prod(env.observation_shape)
added = peak - base
print(json.dumps({"env": env_name, "B": B, "T": T, "algo": algo, "obs": cfg.obs, "S": env.S, "obs_numel": numel,
                  "added_mb": added / 2**20, "bytes_per_step_number": added / (B * T * (env.S + numel))}))
"""


@dataclass
class Args:
    out: str = DEFAULT_OUT
    """Directory for the results JSON."""
    smoke: bool = False
    """One small configuration (what CI runs)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.memory", __doc__)
    configs = [("empty", 64, 8, "pathwise")] if args.smoke else CONFIGS
    machine, stamp = machine_info(), provenance("benchmarks.memory", argv)
    print(f"machine: CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}", flush=True)
    rows = []
    for env, B, T, algo in configs:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, env, str(B), str(T), algo],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            check=True,
        )
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(
        format_table(
            rows,
            ["env", "algo", "obs", "B", "T", "S", "obs_numel", "added_mb", "bytes_per_step_number"],
            {"added_mb": ".0f", "bytes_per_step_number": ".1f"},
        )
    )
    write_json(
        Path(args.out) / ("memory_smoke.json" if args.smoke else "memory.json"),
        stamp | {"machine": machine, "runs": rows},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
