"""Pathwise against REINFORCE through the same learnt model, per Minigrid env, from the results
files of `benchmarks.minigrid`:

    python -m benchmarks.minigrid_actor_grad docs/benchmarks/minigrid_tuning.json \\
        docs/benchmarks/minigrid_heldout.json docs/benchmarks/minigrid_side_by_side.json

Both actors learn from samples (the model is learnt from the agent's own transitions); they differ
only in `--actor-grad`. An env's pair comes from the last file given that holds both `model`
(pathwise, train.py's default) and `model-reinforce` on it, on the seeds both ran. With one
imagined step (the default) the pathwise actor's gradient is the exact sum over the actions, so
this compares that exact gradient with its score-function estimate. Per env:
- the actor that solves (kept policy, test success >= the file's target) more of the paired seeds
  wins;
- if both solve all of them, the fewer frames to the target wins (medians, on the file's grid of
  `--eval-every` frames, as `benchmarks.minigrid` compares them); equal medians tie;
- otherwise each paired seed has a winner or a tie (solved beats unsolved; of two solved runs the
  fewer frames on the grid wins; of two unsolved, the higher test success where the two 95%
  intervals do not overlap), and the actor that wins more seeds wins.
Over the envs that do not tie, a two-sided exact sign test says whether either actor wins more
often than a coin would. Results go to OUT/NAME.json and .md.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from benchmarks.common import DEFAULT_OUT, fail, format_table, parse_args, provenance, write_json
from benchmarks.minigrid_results import on_grid

PATHWISE, REINFORCE = "model", "model-reinforce"


@dataclass
class Args:
    results: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RESULTS_JSON...")]
    """Results files of benchmarks.minigrid; for an env in several, the last one's runs are used."""
    out: str = DEFAULT_OUT
    """Directory for the results JSON and table."""
    name: str = "minigrid_actor_grad"
    """File stem."""


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p-value of `wins` against `losses` under a fair coin (1.0 when
    there is nothing to test)."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def one_seed(a: dict, b: dict, target: float, eval_every: int) -> int:
    """+1 if run `a` (pathwise) beats run `b` (REINFORCE) on their seed, -1 if it loses, 0 if tied."""
    solved_a, solved_b = a["success_rate"] >= target, b["success_rate"] >= target
    if solved_a != solved_b:
        return 1 if solved_a else -1
    if solved_a:
        fa, fb = on_grid(a, eval_every), on_grid(b, eval_every)
        return (fa < fb) - (fa > fb)
    # Neither solved: only a difference beyond both intervals' reach counts.
    return (a["success_ci95_low"] > b["success_ci95_high"]) - (b["success_ci95_low"] > a["success_ci95_high"])


def pair(ours: list[dict], theirs: list[dict], target: float, eval_every: int) -> str:
    """'pathwise', 'reinforce' or 'tie' for one env's runs (`ours` pathwise, `theirs` REINFORCE),
    paired by seed, by the rule in the module's docstring."""
    p, q = summary(ours, target, eval_every), summary(theirs, target, eval_every)
    if p["solved"] != q["solved"]:
        return "pathwise" if p["solved"] > q["solved"] else "reinforce"
    if p["solved"] == len(ours):
        score = (p["frames"] < q["frames"]) - (p["frames"] > q["frames"])
    else:
        score = sum(one_seed(a, b, target, eval_every) for a, b in zip(ours, theirs, strict=True))
    return "pathwise" if score > 0 else "reinforce" if score < 0 else "tie"


def summary(rs: list[dict], target: float, eval_every: int) -> dict[str, Any]:
    """One actor's runs on one env: seeds solved, and the medians of frames on the grid and success."""
    return {
        "solved": sum(r["success_rate"] >= target for r in rs),
        "frames": statistics.median(on_grid(r, eval_every) for r in rs),
        "success": statistics.median(r["success_rate"] for r in rs),
    }


def compare(files: list[tuple[str, dict]]) -> list[dict[str, Any]]:
    """One row per env that some file holds both actors for, from the last such file."""
    chosen: dict[str, dict[str, Any]] = {}
    for path, data in files:
        target, eval_every = data["budget"]["target"], data["budget"]["eval_every"]
        by_env: dict[str, dict[str, dict[int, dict]]] = {}
        for r in data["runs"]:
            by_env.setdefault(r["env"], {}).setdefault(r["learner"], {})[r["seed"]] = r
        for env, learners in by_env.items():
            seeds = sorted(set(learners.get(PATHWISE, {})) & set(learners.get(REINFORCE, {})))
            if not seeds:
                continue
            ours, theirs = [learners[PATHWISE][s] for s in seeds], [learners[REINFORCE][s] for s in seeds]
            p, q = summary(ours, target, eval_every), summary(theirs, target, eval_every)
            chosen[env] = {
                "env": env,
                "class": "samples",
                "seeds": ", ".join(map(str, seeds)),
                "grid": eval_every,
                "pathwise solved": f"{p['solved']}/{len(seeds)}",
                "pathwise frames (median)": p["frames"],
                "pathwise success (median)": p["success"],
                "reinforce solved": f"{q['solved']}/{len(seeds)}",
                "reinforce frames (median)": q["frames"],
                "reinforce success (median)": q["success"],
                "better": pair(ours, theirs, target, eval_every),
                "source": path,
                "commits": ", ".join(sorted({(r.get("git_commit") or "?")[:7] for r in ours + theirs})),
            }
    return [chosen[env] for env in sorted(chosen)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.minigrid_actor_grad", __doc__)
    if not args.results:
        fail("RESULTS_JSON: give the results files of benchmarks.minigrid, e.g. docs/benchmarks/minigrid_heldout.json")
    files = []
    for path in args.results:
        try:
            data = json.loads(Path(path).read_text())
            data["runs"], data["budget"]["target"], data["budget"]["eval_every"]  # noqa: B018 (present?)
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(f"{path}: not a results file of benchmarks.minigrid ({type(e).__name__}: {e}); give a .json it wrote")
        files.append((path, data))
    rows = compare(files)
    if not rows:
        fail("no env in these files has runs of both model and model-reinforce: run benchmarks.minigrid with both")
    count = {side: sum(r["better"] == side for r in rows) for side in ("pathwise", "reinforce", "tie")}
    p = sign_test(count["pathwise"], count["reinforce"])
    verdict = (
        f"Over {len(rows)} Minigrid envs, pathwise (the exact gradient at one imagined step) does better on "
        f"{count['pathwise']}, REINFORCE on {count['reinforce']}, and they tie on {count['tie']} "
        f"(two-sided sign test over the envs that differ: p = {p:.2g})."
    )
    columns = [c for c in rows[0] if c not in ("source", "commits")] + ["commits"]
    md = format_table(rows, columns, {}) + f"\n\n{verdict}\n"
    write_json(
        Path(args.out) / f"{args.name}.json",
        provenance("benchmarks.minigrid_actor_grad", argv)
        | {"args": {"results": list(args.results)}, "counts": count, "sign_test_p": p, "verdict": verdict}
        | {"envs": rows},
    )
    (Path(args.out) / f"{args.name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
