"""The results page, regenerated from the benchmarks' JSON: `python -m benchmarks.report`.

Reads `docs/benchmarks/generalisation_*.json` (written by `python -m benchmarks.generalisation`)
and writes `docs/results.md`: per file, what ran (command, commit, machine), the share of worlds
each learner solved on every seed, and the per-world table; and the summary table in the README,
between its markers. Nothing in either is typed by hand.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import DEFAULT_OUT, fail, format_table, parse_args
from benchmarks.generalisation import FORMATS, TOTAL_COLUMNS, WORLD_COLUMNS


def load(path: Path) -> dict:
    """A generalisation results file, every row with its learner's information class. Files made
    before the classes existed get theirs from each run's stored config (`TrainConfig.from_dict`
    maps the critic of those days, value iteration over the tables, to --critic oracle: model)."""
    from agent.learning.information import information_class
    from agent.run.config import TrainConfig

    data = json.loads(path.read_text())
    by_algo = {}
    for r in data["runs"]:
        if "class" not in r:
            r["class"] = information_class(TrainConfig.from_dict(r["config"])) if "config" in r else None
            r["class"] = r["class"] or ("model" if r["algo"] == "pathwise" else "samples")
        by_algo[r["algo"]] = r["class"]
    for row in data["totals"] + data["worlds"]:
        row.setdefault("class", by_algo.get(row["algo"]))
    return data


def section(path: Path) -> str:
    data = load(path)
    m = data["machine"]
    lines = [
        f"## {path.stem}",
        "",
        f"`{data['command']}` at commit `{data['git_commit']}`; {m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
        f"{data['args']['workers']} runs at a time with one torch thread each (wall-clock is per run, with the "
        f"other runs sharing the machine). Budget {data['args']['steps']:,} env steps per run; solved = the kept "
        f"policy's exact normalised score >= {data['args']['target']}.",
        "",
        "Runs made at: "
        + ", ".join(
            f"{c or 'an earlier commit (not recorded)'} ({n} runs)"
            for c, n in Counter(r.get("run_git_commit") for r in data["runs"]).most_common()
        )
        + " (a finished run is reused by later invocations).",
        "",
        kept_against_final(data["runs"]),
        "",
        format_table(data["totals"], TOTAL_COLUMNS, FORMATS),
        "",
        format_table(data["worlds"], WORLD_COLUMNS, FORMATS),
        "",
    ]
    return "\n".join(lines)


def short(commit: str | None) -> str:
    """`abcdef1` of a commit, `abcdef1-dirty` of a working tree on top of one."""
    if not commit:
        return "?"
    return f"`{commit[:7]}{'-dirty' if commit.endswith('-dirty') else ''}`"


def learner_label(data: dict, algo: str) -> str:
    """A learner as a results file ran it: its algo and the --set overrides of the file."""
    overrides = " ".join(f"{k}={v}" for k, v in sorted(data.get("overrides", {}).items()))
    return f"{algo} {overrides}".strip() if algo != "value-iteration" else algo


def comparison(files: list[Path], baseline: str = "ppo", target: float = 0.95) -> str | None:
    """Every learner of the files (one split, runs at the commit the classes exist), world by world:
    seeds solved, median env steps and seconds to the target; then, per learner, the worlds it
    solves on every seed and, on the worlds both it and `baseline` solve on every seed, its median
    env steps over the baseline's (the median of those ratios and their largest)."""
    learners: dict[str, dict] = {}  # label -> {"class", "worlds": {world: row}}
    for path in files:
        data = load(path)
        for row in data["worlds"]:
            label = learner_label(data, row["algo"])
            entry = learners.setdefault(label, {"class": row["class"], "worlds": {}, "file": path.stem})
            entry["worlds"][row["world"]] = row
    if baseline not in learners or len(learners) < 2:
        return None
    base = learners[baseline]["worlds"]
    totals = []
    for label, entry in learners.items():
        ws = entry["worlds"]
        both = [w for w in ws if w in base and ws[w]["all seeds"] and base[w]["all seeds"]]
        if label == "value-iteration":  # no env steps: it reads the whole tables
            both = []
        ratios = [ws[w]["env steps to target (median)"] / base[w]["env steps to target (median)"] for w in both]
        totals.append(
            {
                "learner": label,
                "class": entry["class"],
                "results file": f"`{entry['file']}`",
                "worlds": len(ws),
                "solved on every seed": sum(r["all seeds"] for r in ws.values()),
                "s to target (median over worlds)": statistics.median(r["s to target (median)"] for r in ws.values())
                if all("s to target (median)" in r for r in ws.values())
                else None,
                f"solved by both it and {baseline}": len(both) if label not in (baseline, "value-iteration") else None,
                f"env steps / {baseline}'s (median)": statistics.median(ratios)
                if ratios and label != baseline
                else None,
                f"at most 1/3 of {baseline}'s": f"{sum(r <= 1 / 3 for r in ratios)}/{len(ratios)}"
                if ratios and label != baseline
                else None,
            }
        )
    return format_table(
        totals, formats={f"env steps / {baseline}'s (median)": ".3f", "s to target (median over worlds)": ".3g"}
    )


def kept_against_final(runs: list[dict]) -> str:
    """How the kept policy (best.pt, what is scored) compares with the run's last one."""
    last = sum(r["kept_step"] == r["steps"] for r in runs)
    drop = max(r["normalized_score"] - r["final_policy_score"] for r in runs)
    return (
        f"The kept policy is the run's last in {last} of {len(runs)} runs; the last policy scores at most "
        f"{drop:.3g} below the kept one."
    )


BEGIN, END = "<!-- results: begin (python -m benchmarks.report) -->", "<!-- results: end -->"


def summary(files: list[Path]) -> str:
    """The README's results table: a row per (file, learner), with the commit its runs were made at;
    single-world files list every seed."""
    rows = []
    for path in files:
        data = load(path)
        seeds = " ".join(str(s) for s in data["args"]["seeds"])
        for t in data["totals"]:
            runs = [r for r in data["runs"] if r["algo"] == t["algo"]]
            seeds = " ".join(str(s) for s in sorted({r["seed"] for r in runs}))
            detail = ""
            if t["worlds"] == 1:  # one world (a maze family): each seed's exact success
                detail = "; success by seed: " + ", ".join(
                    f"{r['exact_success_rate']:.1%}" for r in sorted(runs, key=lambda r: r["seed"])
                )
            rows.append(
                {
                    "results file": f"`{path.stem}`",
                    "learner": t["algo"],
                    "class": t["class"],
                    "exploring starts": " ".join(
                        sorted({f"{r['config']['explore_starts']:g}" for r in runs if "config" in r}) or ["?"]
                    ),
                    "seeds": seeds,
                    "worlds solved on every seed": f"{t['solved on every seed']}/{t['worlds']}",
                    "median score": f"{t['median score']:.3f}",
                    "lowest run score": f"{min(r['normalized_score'] for r in runs):.3f}{detail}",
                    "runs made at": " ".join(
                        sorted({short(r.get("run_git_commit") or data.get("git_commit")) for r in runs})
                    ),
                }
            )
    return format_table(rows)


# results file -> (its table's key in the JSON, the columns shown, their formats)
SPEED = {
    "startup": (
        "rows",
        ["what", "seconds (median)", "beyond import torch", "runs"],
        {"seconds (median)": ".2f", "beyond import torch": ".2f"},
    ),
    "threads": (
        "rows",
        ["setting", "process seconds (median)", "SPS (median)", "repeats"],
        {"process seconds (median)": ".1f", "SPS (median)": ",.0f"},
    ),
    "num_seeds": (
        "rows",
        ["how", "seconds (median)", "runs solved (score >= 0.95)", "median score"],
        {"seconds (median)": ".1f", "median score": ".3f"},
    ),
    "sb3_vecenv": (
        "summary",
        ["env", "copies", "seeds solved", "learn() s (median)", "env steps/s (median)", "speed-up"],
        {"learn() s (median)": ".1f", "env steps/s (median)": ",.0f", "speed-up": ".2f"},
    ),
    "time_to_solve": ("table", None, {}),  # its rows are printed as the benchmark prints them
    "train_throughput": (
        "rows",
        ["learner", "variant", "world", "B", "T", "update_ms", "steps_per_s"],
        {"update_ms": ".1f", "steps_per_s": ",.0f"},
    ),
    "fusion": (
        "rows",
        ["variant", "B", "step_ms", "vs rows, eager", "first_call_s", "graphs", "max_grad_diff"],
        {"step_ms": ".3f", "vs rows, eager": ".2f", "first_call_s": ".2f", "max_grad_diff": ".1e"},
    ),
}


DECISION_COLUMNS = [
    "run",
    "split",
    "worlds",
    "decision states",
    "policy optimal",
    "critic optimal",
    "value error",
    "Q* gap",
    "critic-greedy success",
    "policy success",
]
DECISION_FORMATS = {k: ".3f" for k in ("policy optimal", "critic optimal", "critic-greedy success", "policy success")}
DECISION_FORMATS |= {"value error": ".4f", "Q* gap": ".4f"}


def speed_summary(results: Path) -> str | None:
    """The results page's speed tables (start-up, threads, many seeds in one process, SB3 on our
    env, time to solve, the learner's updates, a fused step's piece), each under its command."""
    parts = []
    for stem, (key, columns, formats) in SPEED.items():
        # threads.py's and train_throughput.py's --name write other settings beside the defaults' file
        named = stem in ("threads", "train_throughput")
        paths = sorted(results.glob(f"{stem}*.json")) if named else [results / f"{stem}.json"]
        for path in (p for p in paths if p.exists() and not p.stem.endswith("_smoke")):
            data = json.loads(path.read_text())
            ratio = f", one process {data['speedup']:.2f}x faster" if "speedup" in data else ""
            parts += [
                f"`{data['command']}` (commit `{data['git_commit']}`{ratio}):",
                "",
                format_table(data[key], columns, formats),
                "",
            ]
    return "\n".join(parts).rstrip() if parts else None


def update_readme(readme: Path, block: str, begin: str = BEGIN, end: str = END) -> bool:
    """Replace the text between a pair of the README's markers; False if it has none."""
    text = readme.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    readme.write_text(head + begin + "\n" + block + "\n" + end + rest.split(end, 1)[1])
    return True


@dataclass
class Args:
    results: str = DEFAULT_OUT
    """Where the benchmark JSON is."""
    out: str = "docs/results.md"
    """The page to write."""
    readme: str = "README.md"
    """The README whose results table (between its markers) is rewritten; "" leaves it alone."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(Args, argv, "benchmarks.report", __doc__)
    files = sorted(Path(args.results).glob("generalisation_*.json"))
    if not files:
        fail(f"--results {args.results}: no generalisation_*.json there; run python -m benchmarks.generalisation")
    page = [
        "# Results",
        "",
        "Generated by `python -m benchmarks.report` from the JSON in `docs/benchmarks/`; "
        "each section names the command that made its file.",
        "",
    ]
    page += [section(f) for f in files]
    speed = speed_summary(Path(args.results))
    if speed:
        page += ["## Speed", "", speed, ""]
    held_out = [
        p
        for p in files
        if p.stem.startswith("generalisation_held-out_") and "class" in json.loads(p.read_text())["totals"][0]
    ]
    table = comparison(held_out)
    if table:
        page += [
            "## Held-out half: every learner against PPO",
            "",
            "From the held-out files whose runs name their information class (the experience-only "
            "learner and after): each learner's worlds solved on every seed, and on the worlds both it "
            "and PPO solve on every seed, its median env steps to a score of 0.95 over PPO's. A model-"
            "class row is a ceiling, not a rival; value iteration takes no env steps.",
            "",
            table,
            "",
        ]
    lookahead = Path(args.results) / "estimators_lookahead.json"
    if lookahead.exists():
        data = json.loads(lookahead.read_text())
        page += [
            "## Estimators at look-aheads",
            "",
            f"`{data['command']}` at commit `{data['git_commit']}` ({data['machine']}). Each estimator's "
            "per-sample gradients of the K-step look-ahead return, closed by a fixed critic, against the "
            "exact gradient of that objective (`benchmarks/lookahead.py`): cos@B, the median cosine over "
            "batches of B; bias, ||mean - g|| / ||g|| (about `noise` where there is none); var, the "
            "per-sample total variance / ||g||^2. At K = 1, st at tau 1 is the `exact` estimator.",
            "",
            data["table"],
            "",
            data["conclusion"],
            "",
        ]
    for path in sorted(Path(args.results).glob("decisions_*.json")):
        data = json.loads(path.read_text())
        page += [
            f"## {path.stem}",
            "",
            f"`{data['command']}` at commit `{data['git_commit']}` (see `benchmarks/decisions.py`):",
            "",
            format_table(data["rows"], DECISION_COLUMNS, DECISION_FORMATS),
            "",
        ]
    Path(args.out).write_text("\n".join(page))
    print(f"wrote {args.out} from {len(files)} file(s)")
    if args.readme and update_readme(Path(args.readme), summary(files)):
        print(f"updated the results table in {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
