"""Would fusing the pathwise step pay on this CPU? One env step's action maths, timed four ways.

    python -m benchmarks.fusion                  # B = 256 and 4096, one thread, eager and compiled
    python -m benchmarks.fusion --no-compile     # eager only, seconds
    python -m benchmarks.fusion --smoke          # tiny and eager only, for CI

The piece timed is the part of a pathwise env step (defaults: ReinMax, state norm) that works on
the B x A action logits, forward and backward: each env's logits read off the policy's logit
table, the Gumbel noise, the one-hot sample with its ReinMax surrogate, `StateNorm`, the entropy
bonus and the logit penalty, and a stand-in for the env's reply (fixed action values q: the
objective is the mean of q . action). The env step, the network and the optimiser are left out:
this is the part built of many small ops on (B, A) tensors, the one a fused step would replace.

- `rows, eager`: the learner's own code (`straight_through`, `StateNorm`, `action_entropy`), the
  logits as the learner holds them, a row of A actions per env.
- `rows, compiled`: the same function under `torch.compile` (inductor's C++ on CPU); the learner's
  generator splits it into several graphs (reported).
- `actions first, eager` / `compiled`: the same maths written over (A, B) tensors, every
  reduction over the A rows instead of within a row of A, compiled as one graph.

Each variant's gradient of the logit table, from the same noise, is compared with the
learner's (`max_grad_diff`, relative to its largest entry). Compile seconds are those of the
first call in this process (inductor's on-disk cache, if warm, shortens them). Results go to
`--out`/fusion.json.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from functools import partial

import torch

from agent.learning.gumbel import sample_gumbel
from agent.learning.pathwise import StateNorm, action_entropy
from agent.learning.straight_through import straight_through
from benchmarks import common

A, S = 4, 64  # FrozenLake 8x8: four actions, 64 cells
ENTROPY, PENALTY = 0.01, 0.01  # train.py's --entropy-coef and --logit-penalty


def rows_step(table, rows, q, unit, tau: float, generator):
    """The learner's code on (B, A) logits: the loss whose gradient reaches the logit table."""
    logits = table.index_select(0, rows)  # (B, A)
    action, _ = straight_through(logits, "reinmax", tau=tau, generator=generator)  # (B, A)
    action = StateNorm.apply(action, unit)
    size = (logits - logits.mean(-1, keepdim=True)).pow(2).mean()
    return -(action * q).sum(-1).mean() - ENTROPY * action_entropy(logits).mean() + PENALTY * size


def columns_loss(table_t, rows, noise, q_t, unit, tau: float):
    """`rows_step`'s maths over (A, B): table_t (A, S), noise and q_t (A, B)."""
    logits = table_t.index_select(1, rows)  # (A, B)
    index = (logits.detach() + noise).argmax(0)  # (B,)
    onehot = (torch.arange(logits.shape[0], device=logits.device)[:, None] == index).to(logits.dtype)  # (A, B)
    pi0 = torch.softmax(logits, 0)  # (A, B)
    pi1 = (onehot + torch.softmax(logits.detach() / tau, 0)) / 2  # (A, B) ReinMax's
    x = torch.where(pi1 > 0, logits, torch.zeros_like(logits))
    surrogate = 2 * pi1 * (x - (pi1 * x).sum(0, keepdim=True)) - 0.5 * pi0  # backward 2 J(pi1) - J(pi0) / 2
    action = StateNorm.apply((onehot + (surrogate - surrogate.detach())).t(), unit).t()  # (A, B), normed per env
    log_pi = logits - logits.logsumexp(0, keepdim=True)
    entropy = -(pi0 * log_pi.clamp(min=torch.finfo(log_pi.dtype).min)).sum(0)  # (B,)
    size = (logits - logits.mean(0, keepdim=True)).pow(2).mean()
    return -(action * q_t).sum(0).mean() - ENTROPY * entropy.mean() + PENALTY * size


@dataclass
class Args(common.Common):
    batch_sizes: tuple[int, ...] = (256, 4096)
    """Numbers of envs B."""
    tau: float = 1.0
    """Temperature (train.py's default)."""
    compile: bool = True
    """Also time the torch.compile variants (each compiles for seconds)."""
    min_time: float = 0.5
    """Seconds a repeat lasts at least."""


def measure(B: int, args: Args) -> list[dict]:
    """Every variant at B envs: its rows of the results table."""
    init = torch.Generator().manual_seed(args.seed)
    table = torch.randn(S, A, generator=init).requires_grad_()  # (S, A) the policy's logit table
    table_t = table.detach().t().contiguous().requires_grad_()  # (A, S)
    rows = torch.randint(0, S, (B,), generator=init)  # (B,) each env's cell
    q = torch.randn(B, A, generator=init)  # (B, A) the env's reply, a stand-in
    q_t, unit = q.t().contiguous(), torch.tensor(1.0 / B)

    def rows_variant(fn):
        def step(generator):
            fn(table, rows, q, unit, args.tau, generator).backward()
            return table.grad  # (S, A)

        return step, (table, rows, q, unit, args.tau, torch.Generator())

    def columns_variant(fn):
        def step(generator):
            noise = sample_gumbel((B, A), generator=generator).t().contiguous()  # (A, B) the learner's draws
            fn(table_t, rows, noise, q_t, unit, args.tau).backward()
            return table_t.grad.t()  # (S, A)

        return step, (table_t, rows, sample_gumbel((A, B)), q_t, unit, args.tau)

    variants = {"rows, eager": (rows_step, rows_variant), "actions first, eager": (columns_loss, columns_variant)}
    if args.compile:
        variants["rows, compiled"] = (torch.compile(rows_step, dynamic=False), rows_variant)
        variants["actions first, compiled"] = (torch.compile(columns_loss, dynamic=False), columns_variant)
    out, reference = [], None
    for name, (fn, variant) in variants.items():
        step, example = variant(fn)
        graphs = None
        if "compiled" in name:
            eager_fn = rows_step if variant is rows_variant else columns_loss
            graphs = torch._dynamo.explain(eager_fn)(*example).graph_count
            torch._dynamo.reset()  # so that the first call below compiles this variant alone
        start = time.perf_counter()
        grad = step(torch.Generator().manual_seed(args.seed)).clone()  # the first call compiles
        first_s = time.perf_counter() - start
        reference = grad if reference is None else reference
        generator = torch.Generator().manual_seed(args.seed)
        t = common.time_it(partial(step, generator), repeats=args.repeats, warmup=2, min_time=args.min_time)
        table.grad = table_t.grad = None
        out.append(
            {
                "variant": name,
                "B": B,
                "step_ms": t.median * 1e3,
                "first_call_s": first_s,
                "graphs": graphs,
                "max_grad_diff": ((grad - reference).abs().max() / reference.abs().max()).item(),
                "spread": t.spread,
                "timing": t,
            }
        )
        print(f"  B={B:<6} {name:<24} {t.median * 1e3:7.3f} ms/step  first call {first_s:6.2f} s", flush=True)
    for row in out:
        row["vs rows, eager"] = out[0]["step_ms"] / row["step_ms"]
    return out


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(Args, argv, "benchmarks.fusion", __doc__)
    stamp = common.provenance("benchmarks.fusion", argv)
    if args.smoke:
        args.batch_sizes, args.repeats, args.min_time, args.compile = (64,), 2, 0.01, False
    if args.repeats < 1 or min(args.batch_sizes) < 1:
        common.fail("--repeats and --batch-sizes must be at least 1")
    common.apply_threads(args.threads)
    common.announce_machine()
    torch.set_flush_denormal(True)  # as train.py
    rows = [row for B in args.batch_sizes for row in measure(B, args)]
    columns = ["variant", "B", "step_ms", "vs rows, eager", "first_call_s", "graphs", "max_grad_diff"]
    fmt = {"step_ms": ".3f", "vs rows, eager": ".2f", "first_call_s": ".2f", "max_grad_diff": ".1e"}
    print()
    print(common.format_table(rows, columns, fmt))
    path = common.write_json(
        f"{args.out}/{'fusion_smoke' if args.smoke else 'fusion'}.json",
        stamp | {"machine": common.machine_info(), "args": vars(args), "rows": rows},
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
