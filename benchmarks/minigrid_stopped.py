"""Our Minigrid runs stopped part-way, for a look at their policy there (benchmarks.minigrid_loops
--policy last): each run is the one `benchmarks.minigrid` makes (same config, same budget, so the
same steps seed by seed), stopped after its evaluation at `--at` frames, as a Ctrl-C there would
stop it; its checkpoint.pt then holds the policy of that step.

    python -m benchmarks.minigrid_stopped --env MiniGrid-DoorKey-5x5-v0 --seeds 1 2 --at 16384 20480
    python -m benchmarks.minigrid_loops runs/minigrid_stopped/* --policy last

A run that reaches the target before `--at` stops there, as in the benchmark.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import announce_machine, fail, parse_args
from benchmarks.minigrid import Budget, our_config
from benchmarks.minigrid_learners import Learner


@dataclass
class Args:
    env: str = "MiniGrid-DoorKey-5x5-v0"
    """A Minigrid id."""
    learner: Learner = "model"
    """One of ours (benchmarks.minigrid's names)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds; each stops at its own entry of --at."""
    at: tuple[int, ...] = (16_384,)
    """Frames after whose evaluation each seed's run stops (one number for all, or one per seed)."""
    frames: int = 500_000
    eval_every: int = 4096
    eval_episodes: int = 64
    target: float = 0.95
    """benchmarks.minigrid's budget, which the runs' learning rates anneal over: keep its values."""
    runs_dir: str = "runs/minigrid_stopped"
    """Where the runs go, one directory ENV__LEARNER__SEED__AT each (made anew each time)."""


def main(argv: list[str] | None = None) -> int:
    import torch

    from agent.run import trainer

    args = parse_args(Args, argv, "benchmarks.minigrid_stopped", __doc__)
    at = args.at * len(args.seeds) if len(args.at) == 1 else args.at
    if len(at) != len(args.seeds) or min(at) < 1:
        fail(f"--at {' '.join(map(str, args.at))}: give one frame count >= 1, or one per seed of --seeds")
    torch.set_num_threads(1)
    announce_machine()
    budget = Budget(args.frames, args.target, args.eval_every, args.eval_episodes, test_episodes=0)
    evaluate_all = trainer.Trainer.evaluate_all
    for seed, stop in zip(args.seeds, at, strict=True):

        def stop_after(self, stop=stop):  # the run's own evaluation, then a stop as Ctrl-C's
            done = evaluate_all(self)
            if self.global_step >= stop and not done:
                raise KeyboardInterrupt
            return done

        run_dir = Path(args.runs_dir) / f"{args.env}__{args.learner}__{seed}__{stop}"
        trainer.Trainer.evaluate_all = stop_after
        try:
            cfg = dataclasses.replace(our_config(args.env, args.learner, seed, budget, run_dir), overwrite=True)
            result = trainer.train(cfg, set())
        finally:
            trainer.Trainer.evaluate_all = evaluate_all
        print(f"{run_dir}: stopped at step {result['global_step']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
