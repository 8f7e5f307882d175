"""Benchmarks, each runnable as `python -m benchmarks.<name>` (see `--help` of each).

- `generalisation` (worlds in `suite`): train.py's default command on every world of a suite half,
  for each learner and seed, scored exactly; `report` turns its JSON into docs/results.md;
  `reference_gap` scores the gamma-optimal policy of every world exactly (what a learner of the
  discounted return can reach under the time limit).
- `time_to_solve`: wall-clock and env steps until the greedy policy solves a world, against SB3.
- `estimators` (gradients in `gradients`): the estimator lab; every gradient estimator in
  `agent.learning.straight_through.ESTIMATORS` (and REINFORCE) against the exact policy gradient.
- `env_throughput`, `train_throughput`, `startup`, `threads`, `num_seeds`, `memory`, `sb3_vecenv`:
  speed and memory of the env, the update, the process start, thread counts, many seeds in one
  process against one process each, and SB3 on our env.

Shared helpers (machine description, timing, tables, JSON with its commit) live in
`benchmarks.common`. Every measuring script takes `--smoke` (seconds, what CI runs) and `--out DIR`
(default docs/benchmarks).
"""
