"""The estimator lab at look-aheads: every estimator against the exact gradient of the K-step
objective the pathwise learner differentiates, with the critic held fixed.

    python -m benchmarks.lookahead                       # K = 1, 2, 4, 8, 16 on room5 (minutes)
    python -m benchmarks.lookahead --map lake8x8 --lookaheads 1 4
    python -m benchmarks.lookahead --smoke               # seconds, for CI

Set-up. A tabular policy pi = softmax(theta), theta (S, A) ~ N(0, `--init-std`) from `--seed`,
and a fixed critic V: the optimal values V* by value iteration (`--critic optimal`), or 0
(`--critic zero`: the K-step return alone). Each sample starts in a reachable cell drawn uniformly
(as exploring starts do), takes K steps on the differentiable path with `straight_through(pos @
theta, estimator, tau)`, and its objective is sum_{t<K} gamma^t r_t + gamma^K V(live position
after K steps), 0 after an episode's end: the look-ahead return of `agent.learning.pathwise` at
`--lookahead K`. The gradient flows through the actions and, for K > 1, through the positions.

The truth. J_K(theta) = d . v_K, with d uniform over the reachable cells, v_0 = V and
v_{k+1}(s) = sum_a pi(a|s) sum_o p(o|s,a) [r + gamma (1 - done) v_k(s'_o)] (K policy-evaluation
backups through the tables); its exact gradient by autograd (`benchmarks.gradients`). At K = 1 the
objective is linear in the one-hot action, and ST at tau = 1 is that gradient.

Statistics per (K, estimator, tau), as `benchmarks.estimators` computes them: cos@B (median over
disjoint batches of B of the cosine to the truth), bias and its noise level, and var (the per-sample
total variance over ||g||^2). Results: `--out`/estimators_lookahead.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from agent.learning.straight_through import ESTIMATORS
from benchmarks.common import Common, fail, format_table, machine_description, parse_args, write_json
from benchmarks.estimators import gradient_stats, lab_world
from benchmarks.gradients import exact_lookahead_gradient, lookahead_samples
from envs.oracle import value_iteration


@dataclass
class Args(Common):
    repeats: int = 16
    """Batches of the largest batch size drawn; the medians are over them."""
    map: str = "room5"
    """World: one of benchmarks.gradients.MAPS (room5), or any envs.make_world spec."""
    gamma: float = 0.99
    """Discount (the learner's default)."""
    lookaheads: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Look-aheads K."""
    estimators: tuple[str, ...] = tuple(e for e in ESTIMATORS if e != "exact")
    """Estimators (the truth is the exact gradient; `exact` is st at tau = 1, which is listed)."""
    taus: tuple[float, ...] = (1.0,)
    """Temperatures."""
    batch_sizes: tuple[int, ...] = (16, 256)
    """Batch sizes B."""
    critic: str = "optimal"
    """The fixed V closing each look-ahead: optimal (V*) or zero."""
    init_std: float = 1.0
    """Std of the random logits theta."""
    rao_k: int = 10
    """Conditional samples of gumbel-rao."""
    chunk: int = 4096
    """Envs rolled out at once (bounds the memory)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.lookahead", __doc__)
    if args.smoke:
        args.lookaheads, args.batch_sizes, args.repeats, args.estimators = (1, 4), (4, 16), 2, ("st", "reinmax")
    unknown = [e for e in args.estimators if e not in ESTIMATORS]
    if unknown:
        fail(f"--estimators {' '.join(unknown)}: unknown; choose from {' '.join(ESTIMATORS)}")
    if args.critic not in ("optimal", "zero"):
        fail(f"--critic {args.critic}: choose optimal or zero")
    if min(args.lookaheads) < 1 or args.repeats < 1 or min(args.batch_sizes) < 1:
        fail("--lookaheads, --repeats and --batch-sizes must be at least 1")
    start_all = time.perf_counter()
    mdp, theta = lab_world(args)
    V = value_iteration(mdp, args.gamma).values.float() if args.critic == "optimal" else torch.zeros(mdp.num_states)
    batch_sizes = sorted(set(args.batch_sizes))
    n = args.repeats * batch_sizes[-1]
    results, rows = [], []
    for K in args.lookaheads:
        J, g = exact_lookahead_gradient(mdp, theta, args.gamma, K, V)
        print(f"K={K}: J_K = {J:.4g}, ||g|| = {float(g.norm()):.3g}", flush=True)
        for est in args.estimators:
            for tau in [None] if est == "zgr" else args.taus:
                t0 = time.perf_counter()
                opts = {"k": args.rao_k} if est == "gumbel-rao" else {}
                x = lookahead_samples(
                    mdp, theta, est, tau=tau or 1.0, n=n, lookahead=K, gamma=args.gamma, values=V, seed=args.seed,
                    chunk=args.chunk, **opts,
                )  # fmt: skip
                r = {"lookahead": K, "estimator": est, "tau": tau, "seconds": time.perf_counter() - t0}
                r |= gradient_stats(x, g, batch_sizes) | {"J": J, "grad_norm": float(g.norm())}
                results.append(r)
                row = {"K": K, "estimator": est, "tau": "-" if tau is None else tau}
                row |= {f"cos@{B}": r["by_batch"][B]["cos_median"] for B in batch_sizes}
                row |= {"bias": r["bias"], "noise": r["noise"], "var": r["var"]}
                rows.append(row)
                print(
                    f"  {est:<11} tau={row['tau']!s:<4} cos@{batch_sizes[-1]} {row[f'cos@{batch_sizes[-1]}']:+.3f}"
                    f"  bias {r['bias']:.3f} (noise {r['noise']:.3f})  var {r['var']:.3g}",
                    flush=True,
                )
    fmt = {f"cos@{B}": "+.3f" for B in batch_sizes} | {"bias": ".3f", "noise": ".3f", "var": ".3g", "tau": "g"}
    table = format_table(rows, formats=fmt)
    print()
    print(table)
    best = {}
    for K in args.lookaheads:
        at = [r for r in results if r["lookahead"] == K]
        top = max(at, key=lambda r: r["by_batch"][batch_sizes[-1]]["cos_median"])
        best[K] = f"{top['estimator']} (tau {top['tau']})"
    line = f"Highest median cosine at B={batch_sizes[-1]}: " + "; ".join(f"K={K}: {b}" for K, b in best.items())
    print(line)
    path = write_json(
        f"{args.out}/estimators_lookahead.json",
        {
            "benchmark": "estimators_lookahead",
            "machine": machine_description(),
            "args": vars(args),
            "world": {"map": args.map, "states": mdp.num_states, "samples_per_estimator": n},
            "conclusion": line,
            "table": table,
            "seconds": time.perf_counter() - start_all,
            "results": results,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
