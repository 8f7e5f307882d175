"""The estimator lab: every gradient estimator against the exact policy gradient.

    python -m benchmarks.estimators                    # default lab (a few minutes on 2 cores)
    python -m benchmarks.estimators --map lake8x8      # any world spec envs.make_world takes
    python -m benchmarks.estimators --smoke            # seconds, for CI

Set-up. A tabular policy pi = softmax(theta), theta (S, A) drawn once from N(0, `--init-std`)
with `--seed`, so the policy is far from uniform. Its exact objective is the expected discounted
return J = start . v_pi from `envs.oracle.expected_return` (it solves (I - gamma P_pi) v = r_pi),
and the exact gradient g = dJ/dtheta comes from autograd through that solve.

Estimates. Each sample is one env of `envs.BatchedGridWorld` on the differentiable path: it
starts from the start distribution and takes `action = straight_through(pos @ theta, estimator,
tau)`, with `pos` the env's one-hot position (B, S), so the gradient also flows through the
position into earlier actions. The sample's objective is sum_t gamma^t r_t over its first episode
(later steps are masked with `done`; the env auto-resets), back-propagated into a per-sample
copy of theta, which gives the per-sample gradient directly. REINFORCE samples use integer
actions: sum_t gamma^t grad log pi(a_t | s_t) (G_t - b(s_t)), with b the exact v_pi
(`reinforce+v`, `envs.oracle.policy_values`) or b = 0 (`reinforce`); both unbiased.

Horizon. The rollouts stop at H steps (also the env's time limit), which estimates the gradient
g_H of the H-step objective, not g. H is the smallest power-of-two-bisected horizon with
||g_H - g|| / ||g|| < `--trunc-tol` (g_H computed exactly by H policy-evaluation backups);
the truncation bias is printed and stored, and stays below the pooled noise floor.

Statistics, per (estimator, tau), from N = `--repeats` x max(batch sizes) per-sample gradients
(the same seeds for every estimator: common random numbers):
- cos@B: median over the N // B disjoint batches of B of cos(mean of the batch, g).
- cos@all: cos(mean of all N, g), where cos@B heads as B grows: a bias along g (a wrong
  scale) leaves it at 1, a bias across g lowers it.
- bias: ||mean of all N - g|| / ||g||; `noise` is sqrt(tr Cov / N) / ||g||, the norm the
  pooled mean's own noise typically has, so bias/noise ~ 1 is consistent with no bias.
- var: tr Cov of one per-sample gradient / ||g||^2 (a batch of B has var / B).
zgr ignores tau, and REINFORCE has none: they are run once and shown with every tau.

Results go to `--out`/estimators.json and estimators.png.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from agent.gumbel_figures import save_figure
from agent.learning.straight_through import ESTIMATORS
from benchmarks.common import (
    Common,
    apply_threads,
    fail,
    format_table,
    machine_description,
    machine_info,
    parse_args,
    pyplot,
    write_json,
)
from benchmarks.gradients import (
    REINFORCE,
    build_mdp,
    choose_horizon,
    exact_gradient,
    init_theta,
    pathwise_samples,
    reinforce_samples,
    truncation_bias,
)
from envs import TabularMDP


# ----------------------------------------------------------------------------- statistics
def gradient_stats(samples: torch.Tensor, g: torch.Tensor, batch_sizes: list[int]) -> dict:
    """Cosine similarity at each batch size, pooled relative bias, per-sample total variance."""
    x = samples.reshape(samples.shape[0], -1).double()  # (N, D)
    g = g.reshape(-1).double()  # (D,)
    n, gn = x.shape[0], float(g.norm())
    mean = x.mean(0)  # (D,)
    trace = float(((x - mean) ** 2).sum() / max(n - 1, 1))  # tr Cov of one sample
    stats = {
        "n": n,
        "bias": float((mean - g).norm()) / gn,
        "cos_pooled": float(mean @ g) / max(float(mean.norm()) * gn, 1e-300),
        "noise": math.sqrt(trace / n) / gn,
        "var": trace / gn**2,
        "zero_fraction": float((x.abs().sum(1) == 0).double().mean()),  # samples with no gradient
        "by_batch": {},
    }
    for B in batch_sizes:
        k = n // B
        means = x[: k * B].reshape(k, B, -1).mean(1)  # (k, D)
        cos = (means @ g) / (means.norm(dim=1).clamp_min(1e-300) * gn)  # (k,) 0 for a zero estimate
        q = torch.quantile(cos, torch.tensor([0.25, 0.5, 0.75], dtype=cos.dtype)).tolist()
        stats["by_batch"][B] = {
            "repeats": k,
            "cos_median": q[1],
            "cos_q25": q[0],
            "cos_q75": q[2],
            "var": trace / B / gn**2,
        }
    return stats


def conclusion(results: list[dict], taus: list[float], batch_sizes: list[int]) -> str:
    """The estimators with the highest median cosine at the largest and a middle B, at tau ~ 1."""
    tau = min(taus, key=lambda t: abs(t - 1.0))
    rows = [r for r in results if r["tau"] is None or r["tau"] == tau]
    sizes = sorted(batch_sizes)
    parts = []
    for B in dict.fromkeys([sizes[-1], sizes[len(sizes) // 2]]):
        # Estimators equal at the printed precision (e.g. reinmax at tau=1 and zgr, the same
        # estimator up to float rounding) share a rank: "zgr = reinmax".
        ranked: dict[float, list[str]] = {}
        for r in sorted(rows, key=lambda r: -r["by_batch"][B]["cos_median"]):
            ranked.setdefault(round(r["by_batch"][B]["cos_median"], 4), []).append(r["estimator"])
        top = [f"{' = '.join(names)} ({cos:.4f})" for cos, names in list(ranked.items())[:2]]
        parts.append(f"at B={B} " + ", then ".join(top))
    return f"Highest median cosine similarity to the exact gradient at tau={tau:g}: " + "; ".join(parts) + "."


# ----------------------------------------------------------------------------- output
def plot(results: list[dict], taus: list[float], batch_sizes: list[int], path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    names = list(dict.fromkeys(r["estimator"] for r in results))
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    fig = plt.figure(figsize=(4.2 * len(taus), 7.5))
    grid = fig.add_gridspec(2, len(taus))
    for j, tau in enumerate(taus):
        ax = fig.add_subplot(grid[0, j])
        for r in results:
            if r["tau"] not in (None, tau):
                continue
            med = [r["by_batch"][B]["cos_median"] for B in batch_sizes]
            lo = [r["by_batch"][B]["cos_q25"] for B in batch_sizes]
            hi = [r["by_batch"][B]["cos_q75"] for B in batch_sizes]
            style = "--" if r["tau"] is None else "-"
            ax.plot(batch_sizes, med, style, marker="o", ms=3, color=colors[r["estimator"]], label=r["estimator"])
            ax.fill_between(batch_sizes, lo, hi, color=colors[r["estimator"]], alpha=0.12)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.1, 1.02)
        ax.set_xlabel("batch size B")
        ax.set_title(f"tau = {tau:g} (dashed: tau-free)", fontsize=10)
        ax.grid(alpha=0.3)
        if j == 0:
            ax.set_ylabel("cos(estimate, exact gradient), median & IQR")
            ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[1, :])
    width = 0.8 / len(taus)
    for j, tau in enumerate([*taus, None]):
        xs, bias, noise = [], [], []
        for i, name in enumerate(names):
            r = next((r for r in results if r["estimator"] == name and r["tau"] == tau), None)
            if r is not None:
                xs.append(i + (0 if tau is None else (j - (len(taus) - 1) / 2) * width))
                bias.append(r["bias"])
                noise.append(r["noise"])
        if xs:
            ax.bar(
                xs,
                bias,
                width,
                label="tau-free" if tau is None else f"tau = {tau:g}",
                alpha=0.8,
                color="tab:gray" if tau is None else None,
            )
            ax.errorbar(xs, noise, fmt="_", color="k", ms=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("relative bias ||E[g_hat] - g|| / ||g||")
    ax.set_title("pooled bias (bars) and the pooled mean's noise level (black ticks)", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


@dataclass
class Args(Common):
    repeats: int = 16
    """Batches of the largest batch size drawn; the medians are over them."""
    map: str = "room5"
    """World: one of MAPS (room5, ...), or any envs.make_world spec, e.g. lake8x8."""
    gamma: float = 0.9
    """Discount, in (0, 1) for the exact return to exist."""
    estimators: tuple[str, ...] = (*(e for e in ESTIMATORS if e != "exact"), *REINFORCE)
    """What to compare (default: the straight-through estimators and REINFORCE; `exact` is st at
    tau 1, exact only where the objective is linear in the action: benchmarks.lookahead at K = 1)."""
    batch_sizes: tuple[int, ...] = (16, 256, 4096)
    """Batch sizes B."""
    taus: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Temperatures."""
    init_std: float = 0.5
    """Std of the random logits theta."""
    horizon: int | None = None
    """Rollout length H (default: chosen from --trunc-tol)."""
    trunc_tol: float = 1e-3
    """Largest relative truncation bias ||g_H - g||/||g|| allowed."""
    rao_k: int = 10
    """Conditional samples of gumbel-rao."""
    chunk: int = 8192
    """Envs rolled out at once (bounds the memory)."""


def lab_world(args) -> tuple[TabularMDP, torch.Tensor]:
    """A lab's world and random policy logits (S, A) from its --map, --seed, --init-std, with its
    --threads applied and the machine printed; a bad --map is one error line."""
    apply_threads(args.threads)
    print(machine_description(), flush=True)
    try:
        mdp = build_mdp(args.map, args.seed)
    except ValueError as e:
        fail(f"--map {args.map}: {e}")
    return mdp, init_theta(mdp, args.init_std, args.seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.estimators", __doc__)
    if args.smoke:
        args.batch_sizes, args.taus, args.repeats = (4, 16), (1.0,), 2
        args.trunc_tol, args.chunk = 0.05, 64
    unknown = [e for e in args.estimators if e not in (*ESTIMATORS, *REINFORCE)]
    if unknown:
        fail(f"--estimators {' '.join(unknown)}: unknown; choose from {' '.join((*ESTIMATORS, *REINFORCE))}")
    if args.repeats < 1 or min(args.batch_sizes) < 1 or args.chunk < 1:
        fail("--repeats, --batch-sizes and --chunk must be at least 1")
    if not 0.0 < args.gamma < 1.0:
        fail(f"--gamma {args.gamma} must be in (0, 1) for the exact return to exist")
    if min(args.taus) <= 0:
        fail(f"--taus {' '.join(map(str, args.taus))} must be positive")
    start_all = time.perf_counter()
    mdp, theta = lab_world(args)
    J, g = exact_gradient(mdp, theta, args.gamma)
    horizon = args.horizon or choose_horizon(mdp, theta, args.gamma, g, args.trunc_tol)
    trunc = truncation_bias(mdp, theta, args.gamma, horizon, g)
    batch_sizes = sorted(set(args.batch_sizes))
    n = args.repeats * batch_sizes[-1]
    print(
        f"world {args.map} ({mdp.num_states} states), gamma {args.gamma}, "
        f"theta ~ N(0, {args.init_std}) seed {args.seed}: J = {J:.4g}, "
        f"||g|| = {float(g.norm()):.3g}; "
        f"horizon H = {horizon} "
        f"(truncation bias ||g_H - g||/||g|| = {trunc:.1e}); {n} samples per estimator",
        flush=True,
    )

    results: list[dict] = []
    kept: dict[tuple[str, float | None], torch.Tensor] = {}  # per-sample gradients the checks need
    means: dict[tuple[str, float | None], torch.Tensor] = {}  # pooled means

    def add(name: str, tau: float | None, x: torch.Tensor, seconds: float) -> None:
        if (name, tau) in (("zgr", None), ("reinmax", 1.0)):
            kept[(name, tau)] = x
        means[(name, tau)] = x.double().mean(0)
        r = {"estimator": name, "tau": tau, "seconds": seconds, **gradient_stats(x, g, batch_sizes)}
        results.append(r)
        print(
            f"  {name:<12} tau={'-' if tau is None else f'{tau:g}':<4} "
            f"cos@{batch_sizes[-1]} {r['by_batch'][batch_sizes[-1]]['cos_median']:+.3f}  "
            f"bias {r['bias']:.3f} (noise {r['noise']:.3f})  {seconds:.1f}s",
            flush=True,
        )

    common = {"n": n, "horizon": horizon, "gamma": args.gamma, "seed": args.seed, "chunk": args.chunk}
    if any(e in REINFORCE for e in args.estimators):
        t0 = time.perf_counter()
        rf = reinforce_samples(mdp, theta, **common)
        seconds = time.perf_counter() - t0  # one rollout serves both baselines
        for name in REINFORCE:
            if name in args.estimators:
                add(name, None, rf[name], seconds)
    for est in (e for e in args.estimators if e in ESTIMATORS):
        for tau in [None] if est == "zgr" else args.taus:
            t0 = time.perf_counter()
            opts = {"k": args.rao_k} if est == "gumbel-rao" else {}
            x = pathwise_samples(mdp, theta, est, tau=tau or 1.0, **common, **opts)
            add(est, tau, x, time.perf_counter() - t0)

    # Sanity lines computed from the data (not asserted).
    checks: dict = {"truncation_bias": trunc}
    if len(kept) == 2:  # the same noise drives both, so the trajectories are the same
        checks["reinmax_tau1_vs_zgr_max_abs_diff"] = float((kept[("zgr", None)] - kept[("reinmax", 1.0)]).abs().max())
        checks["grad_scale_max_abs"] = float(kept[("zgr", None)].abs().max())
    # Gumbel-Rao is ST-GS Rao-Blackwellised: the same mean, so the pooled means should differ
    # by noise only.
    noise = {(r["estimator"], r["tau"]): r["noise"] for r in results}
    for tau in args.taus:
        a, b = ("gumbel-rao", tau), ("st-gs", tau)
        if a in means and b in means:
            checks[f"gumbel-rao_vs_st-gs_tau{tau:g}"] = {
                "mean_diff": float((means[a] - means[b]).norm() / g.norm()),
                "noise": math.hypot(noise[a], noise[b]),
            }

    Bs = batch_sizes
    table_rows = []
    for r in results:
        row = {"estimator": r["estimator"], "tau": "-" if r["tau"] is None else r["tau"]}
        row.update({f"cos@{B}": r["by_batch"][B]["cos_median"] for B in Bs})
        row.update(
            {
                "cos@all": r["cos_pooled"],
                "bias": r["bias"],
                "noise": r["noise"],
                "bias/noise": r["bias"] / r["noise"] if r["noise"] else float("nan"),
                "var": r["var"],
                "zero": r["zero_fraction"],
                "s": r["seconds"],
            }
        )
        table_rows.append(row)
    fmt = {f"cos@{B}": "+.3f" for B in Bs} | {
        "cos@all": "+.3f",
        "bias": ".3f",
        "noise": ".3f",
        "bias/noise": ".1f",
        "var": ".3g",
        "zero": ".0%",
        "s": ".1f",
        "tau": "g",
    }
    print()
    print(format_table(table_rows, formats=fmt))
    print(
        "\ncos@B: median over batches of B of the cosine to the exact gradient; "
        f"cos@all: the cosine of the mean of all {n}; bias: pooled relative bias; "
        "noise: the pooled mean's noise level (bias/noise ~ 1: no detectable bias); "
        "var: per-sample tr Cov / ||g||^2; zero: samples with an all-zero gradient; s: seconds."
    )
    if "reinmax_tau1_vs_zgr_max_abs_diff" in checks:
        print(
            f"reinmax at tau=1 vs zgr, same noise: max |per-sample gradient difference| = "
            f"{checks['reinmax_tau1_vs_zgr_max_abs_diff']:.2e} "
            f"(largest |entry| {checks['grad_scale_max_abs']:.2e})"
        )
    for key, c in checks.items():
        if key.startswith("gumbel-rao_vs_st-gs"):
            print(
                f"gumbel-rao vs st-gs at tau={key.rsplit('tau', 1)[1]}: ||mean difference|| / "
                f"||g|| = {c['mean_diff']:.3f} (noise level {c['noise']:.3f})"
            )
    line = conclusion(results, args.taus, batch_sizes)
    print(line)
    total = time.perf_counter() - start_all
    print(f"total {total:.1f}s")

    out = Path(args.out)
    payload = {
        "benchmark": "estimators",
        "machine": machine_info(),
        "args": vars(args),
        "world": {
            "map": args.map,
            "states": mdp.num_states,
            "gamma": args.gamma,
            "horizon": horizon,
            "J": J,
            "grad_norm": float(g.norm()),
            "samples_per_estimator": n,
        },
        "checks": checks,
        "conclusion": line,
        "seconds": total,
        "results": results,
    }
    path = write_json(out / "estimators.json", payload)
    png = plot(results, args.taus, batch_sizes, out / "estimators.png")
    print(f"wrote {path}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
