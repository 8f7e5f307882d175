"""Learning curves from run directories: `python -m agent.plot runs/A* runs/B* --out curves.png`.

Reads each run's local `metrics.jsonl` (no wandb account needed). Runs whose `config.json` agree
on everything but the seed and the bookkeeping fields (run name, directories, wandb, progress,
device) form one group, or runs that share a `--wandb-group`: a group is drawn as its mean
over seeds, interpolated onto a common x grid, with a min-max band. The legend names what
differs between groups (e.g. `algo=ppo` vs `algo=pathwise`).

Examples:
    python -m agent.plot runs/four_rooms__* --out curves.png
    python -m agent.plot runs/* --metric eval/success_rate --band std --out success.png
    python -m agent.plot runs/* --metric charts/episodic_return eval/success_rate --out both.png
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import tyro

from agent.run.cli import parse
from agent.run.logger import read_metrics

# Fields that never change what a run learns: two runs differing only in these are seeds of
# one experiment.
IGNORED = frozenset(
    {
        "seed",
        "run_name",
        "resume",
        "runs_dir",
        "device",
        "progress",
        "capture_video",
        "save_every",
        "wandb_mode",
        "wandb_project",
        "wandb_entity",
        "wandb_group",
        "tags",
        "threads",
        "save_every_s",
        "overwrite",
        "derived_seeds",
    }
)
GRID_POINTS = 200
LABELS = {
    "global_step": "env steps",
    "charts/episodic_return": "episodic return",
    "charts/success_rate": "success rate (training episodes)",
    "eval/success_rate": "greedy success rate",
    "charts/normalized_score": "normalised score",
}


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]

    def curve(self, metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) sorted by x; a step logged twice (e.g. after a resume) keeps its last value."""
        points = {row[x]: row[metric] for row in self.rows if metric in row and x in row}
        if not points:
            available = sorted({k for row in self.rows for k in row})
            raise ValueError(f"{self.path} has no rows with both {metric!r} and {x!r}; it logs: {', '.join(available)}")
        xs = np.array(sorted(points), dtype=float)
        return xs, np.array([points[k] for k in sorted(points)], dtype=float)


def load_run(path: str | Path) -> Run:
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"{p} is not a run directory; pass directories train.py wrote (runs/NAME)")
    rows = read_metrics(p)
    config_file = p / "config.json"
    try:
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_file} is not valid JSON ({e})") from None
    return Run(p, config, rows)


def group_key(run: Run) -> str:
    """Runs with one key are seeds of one experiment."""
    if run.config.get("wandb_group"):
        return "group=" + str(run.config["wandb_group"])
    if not run.config:  # no config.json: a group of its own
        return "run=" + str(run.path)
    return json.dumps({k: v for k, v in run.config.items() if k not in IGNORED}, sort_keys=True)


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by experiment; two runs of one experiment with the same seed (an aborted try and a
    full one, say) are refused: averaging them would count one seed twice."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)
    for members in groups.values():
        seen: dict[object, Run] = {}
        for run in members:
            seed = run.config.get("seed", run.path)
            key = (seed, json.dumps({k: v for k, v in run.config.items() if k not in IGNORED}, sort_keys=True))
            if key in seen:
                raise ValueError(
                    f"{seen[key].path} and {run.path} are the same experiment with seed {seed}; "
                    "pass one of them (e.g. not an aborted try)"
                )
            seen[key] = run
    return groups


def group_labels(groups: dict[str, list[Run]]) -> dict[str, str]:
    """Legend text per group: the config fields that differ between groups."""
    configs = {key: {k: v for k, v in runs[0].config.items() if k not in IGNORED} for key, runs in groups.items()}
    fields = sorted({k for c in configs.values() for k in c})
    differing = [k for k in fields if len({json.dumps(c.get(k)) for c in configs.values()}) > 1]
    labels = {}
    for key, runs in groups.items():
        c = configs[key]
        if key.startswith("group="):
            text = key[len("group=") :]
        elif key.startswith("run="):
            text = runs[0].path.name
        elif differing:
            text = ", ".join(f"{k}={_short(c.get(k))}" for k in differing)
        else:  # one group: say what it is
            estimator = f" ({c.get('estimator')})" if c.get("algo") == "pathwise" else ""
            text = f"{c.get('env')} · {c.get('algo')}{estimator}"
        if key.startswith("group="):  # a wandb group may hold other settings too: its members are runs
            labels[key] = f"{text}  [{len(runs)} run{'s' if len(runs) != 1 else ''}]"
        else:
            seeds = len({run.config.get("seed", run.path) for run in runs})
            labels[key] = f"{text}  [{seeds} seed{'s' if seeds != 1 else ''}]"
    return labels


def _si(v: float, _pos=None) -> str:
    """Axis ticks as 500k / 1.5M instead of an offset `1e6`."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:g}{suffix}"
    return f"{v:g}"


def _short(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return " ".join(map(str, v)) or "()"
    return str(v)


def common_range(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """The x range every curve covers."""
    return max(xs[0] for xs, _ in curves), min(xs[-1] for xs, _ in curves)


def aggregate(
    curves: list[tuple[np.ndarray, np.ndarray]], band: str, points: int = GRID_POINTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds -> (grid, mean, low, high) on the x range all seeds cover (linear interpolation)."""
    lo_x, hi_x = common_range(curves)
    if len(curves) == 1 or hi_x <= lo_x:
        xs, ys = max(curves, key=lambda c: len(c[0]))
        return xs, ys, ys, ys
    grid = np.linspace(lo_x, hi_x, points)
    ys = np.stack([np.interp(grid, xs, y) for xs, y in curves])  # (seeds, points)
    mean = ys.mean(0)
    if band == "std":
        std = ys.std(0)
        return grid, mean, mean - std, mean + std
    return grid, mean, ys.min(0), ys.max(0)


def smooth(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average (0 = raw), bias-corrected at the start."""
    if weight <= 0:
        return y
    out, avg, norm = np.empty_like(y), 0.0, 0.0
    for i, v in enumerate(y):
        avg, norm = weight * avg + (1 - weight) * v, weight * norm + (1 - weight)
        out[i] = avg / norm
    return out


def plot(
    run_dirs: list[str | Path],
    out: str | Path,
    *,
    metrics: list[str],
    x: str = "global_step",
    band: str = "minmax",
    smoothing: float = 0.0,
    title: str | None = None,
) -> Path:
    """Draw one panel per metric, one line (mean) and band per group; returns the file written."""
    if not run_dirs:
        raise ValueError("no run directories given")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"--smooth {smoothing} must be in [0, 1)")
    runs = [load_run(p) for p in run_dirs]
    groups = group_runs(runs)
    labels = group_labels(groups)
    curves = {(m, key): [run.curve(m, x) for run in members] for m in metrics for key, members in groups.items()}
    # Seeds are averaged where they all have data; say where a shorter run cuts a group's curve.
    notes = []
    for (metric, key), seeds in curves.items():
        lo, hi = common_range(seeds)
        longest = max(xs[-1] for xs, _ in seeds)
        if len(seeds) > 1 and hi < longest:
            short = min(zip(seeds, groups[key], strict=True), key=lambda p: p[0][0][-1])[1]
            notes.append(
                f"{labels[key].split('  [')[0]}: {metric} drawn to {x} {_si(hi)} (of {_si(longest)}), "
                f"where {short.path.name} ends"
            )
    for note in dict.fromkeys(notes):
        print(f"note: {note}", file=sys.stderr)
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plotting needs matplotlib: pip install 'gumbel-gridworld[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, key in enumerate(groups):
            # Smooth each seed before averaging so the band shows seed spread, not step noise.
            seeds = [(xs, smooth(ys, smoothing)) for xs, ys in curves[(metric, key)]]
            grid, mean, low, high = aggregate(seeds, band)
            color = f"C{i % 10}"
            ax.plot(grid, mean, color=color, lw=1.8, label=labels[key])
            if len(seeds) > 1 and band != "none":
                ax.fill_between(grid, low, high, color=color, alpha=0.2, lw=0)
        ax.set_xlabel(LABELS.get(x, x))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_si))
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8, frameon=False)
    seeds = any(len(members) > 1 for members in groups.values())
    spread = {"minmax": "band: min-max over seeds", "std": "band: ±1 std over seeds", "none": ""}[band] if seeds else ""
    if title or spread:
        fig.suptitle(title or spread, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=120)
    except ValueError as e:  # e.g. an unknown file extension
        raise ValueError(f"cannot write {out}: {e}") from None
    finally:
        plt.close(fig)
    return out


@dataclass
class PlotArgs:
    """Learning curves from run directories: seeds averaged, their spread as a band."""

    runs: Annotated[list[str], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR...")]
    """Run directories written by train.py."""
    out: str
    """The image to write (.png, .pdf, .svg, ...)."""
    metric: list[str] = dataclasses.field(default_factory=lambda: ["charts/episodic_return"])
    """Metric(s) from metrics.jsonl, one panel each."""
    x: str = "global_step"
    """The x-axis key."""
    band: Literal["minmax", "std", "none"] = "minmax"
    """Spread over seeds: min-max, mean +- std, or none."""
    smooth: float = 0.0
    """Exponential moving-average weight in [0, 1), per seed."""
    title: str | None = None
    """Figure title (default: what the band shows)."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, _ = parse(PlotArgs, argv, prog="python -m agent.plot", description=__doc__)
        out = plot(
            args.runs, args.out, metrics=args.metric, x=args.x, band=args.band, smoothing=args.smooth, title=args.title
        )
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
