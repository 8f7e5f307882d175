"""What a discounted learner can reach on each world: the normalised score of the gamma-optimal policy.

    python -m benchmarks.reference_gap                       # every world of the suite, gamma 0.99
    python -m benchmarks.reference_gap --gammas 0.99 0.999 --split held-out
    python -m benchmarks.reference_gap --smoke               # two worlds, for CI

The normalised score's top, R*, is the optimum under the time limit (backward induction over the
limit's T steps): a policy that may act differently at each step. Every learner here is trained on
the discounted return and sees no clock, so the best it can aim at is the stationary policy that
is greedy on the gamma-discounted optimal values (value iteration). This script scores that policy
exactly as a trained one is scored (agent.run.scoring: the same evaluation env, time limit and
references) and, as a lower bound on the best stationary policy, the best of the policies greedy
on the k-step optimal values, k = 1, 2, 4, ..., T (and 3T/4, T/2). A world whose gamma-optimal score is below the target
(0.95) is one where a learner that finds the discounted optimum still counts as unsolved. No
training: exact computations on the tables, seconds in all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from agent.run.config import TrainConfig
from agent.run.factory import build_eval_env
from agent.run.resolve import resolve
from agent.run.scoring import reference_returns, world_tables
from benchmarks import suite
from benchmarks.common import DEFAULT_OUT, format_table, machine_info, parse_args, provenance, write_json
from envs.oracle import _backup, normalized_score, policy_metrics


def greedy(q: torch.Tensor) -> torch.Tensor:
    """(..., S, A) action values -> the deterministic policy greedy on them, (..., S, A)."""
    return torch.nn.functional.one_hot(q.argmax(-1), q.shape[-1]).double()


def scores(world: suite.SuiteWorld, gammas: tuple[float, ...], target: float) -> dict:
    """The exact normalised scores (scored at the config's gamma, as training is) of the greedy
    policies on the gamma-optimal values for each of `gammas`, and the best greedy-on-k-step policy."""
    cfg, _ = resolve(replace(TrainConfig(**world.config_fields()), device="cpu"))
    env = build_eval_env(cfg, torch.device("cpu"), "validation")
    tables, T = world_tables(env), env.max_episode_steps
    reference = reference_returns(env, cfg.gamma)
    reward = tables["reward"].double()

    def score(policy: torch.Tensor) -> float:
        value = policy_metrics(tables, policy, cfg.gamma, T)["return"]
        return float(normalized_score(value, reference["uniform"], reference["optimal"]).mean())

    row: dict = {"world": world.name, "family": world.family, "split": world.split, "time limit": T}
    for gamma in gammas:
        values = torch.zeros(reward.shape[:-2], dtype=torch.float64)  # (W, S)
        for _ in range(100_000):
            new = _backup(tables, values, gamma, reward).amax(-1)  # (W, S)
            done = float((new - values).abs().max()) < 1e-8
            values = new
            if done:
                break
        row[f"gamma-optimal score (gamma {gamma})"] = score(greedy(_backup(tables, values, gamma, reward)))
    values = torch.zeros(reward.shape[:-2], dtype=torch.float64)
    best = float("-inf")
    scored = {min(T, 2**i) for i in range(T.bit_length() + 1)} | {T // 2, 3 * T // 4}
    for k in range(1, T + 1):  # the k-step optimal values at the config's gamma, scored at k = 1, 2, 4, ..., T
        q = _backup(tables, values, cfg.gamma, reward)
        values = q.amax(-1)
        if k in scored:
            best = max(best, score(greedy(q)))
    row["best greedy-on-k-step score"] = best
    return row


@dataclass
class Args:
    split: str | None = None
    """tuning, held-out or builtin (default: every world of the suite)."""
    gammas: tuple[float, ...] = (0.99,)
    """Discounts of the optimal values whose greedy policy is scored (the score itself always uses
    train.py's gamma)."""
    target: float = 0.95
    """Normalised score that counts as solved."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON."""
    smoke: bool = False
    """Two worlds (what CI runs)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.reference_gap", __doc__)
    machine, stamp = machine_info(), provenance("benchmarks.reference_gap", argv)
    print(f"machine: CPU {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}", flush=True)
    chosen = suite.worlds(args.split)
    if args.smoke:
        chosen = [w for w in chosen if w.name in ("FrozenLake4x4-slippery", "CliffWalking")]
    rows = [scores(w, args.gammas, args.target) for w in chosen]
    first = f"gamma-optimal score (gamma {args.gammas[0]})"
    below = [r for r in rows if r[first] < args.target]
    print(format_table(rows, None, {k: ".4f" for k in rows[0] if "score" in k}))
    print(f"{len(below)} of {len(rows)} worlds: the gamma-optimal policy scores below {args.target}")
    write_json(
        Path(args.out) / ("reference_gap_smoke.json" if args.smoke else "reference_gap.json"),
        stamp | {"machine": machine, "args": vars(args), "rows": rows, "below_target": [r["world"] for r in below]},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
