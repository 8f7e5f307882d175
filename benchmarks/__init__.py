"""Benchmarks, each runnable as `python -m benchmarks.<name>` (see `--help` of each).

- `env_throughput`: env steps/s of `envs.BatchedGridWorld` (integer, differentiable forward,
  forward + backward) next to gymnasium / Minigrid envs, and the one-hot step kernel against
  the dense reference.
- `estimators` (with `gradients`): the estimator lab; every gradient estimator in `agent.straight_through.ESTIMATORS` (and
  REINFORCE) against the exact policy gradient of a tabular policy.
- `learning`: train.py's default command on each world, several learners and seeds.

Shared helpers (machine description, timing, tables, JSON) live in `benchmarks.common`.
Every script takes `--smoke` (seconds, what CI runs) and `--out DIR` (default docs/benchmarks).
"""
