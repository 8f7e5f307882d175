"""What every benchmark shares: the machine it ran on, a timer, tables and JSON output."""

from __future__ import annotations

import ast
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch

DEFAULT_OUT = "docs/benchmarks"
_THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")


# ----------------------------------------------------------------------------- the machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """The facts a timing depends on, as a JSON-ready dict."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": _usable_cores(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        # Thread settings change CPU timings a lot (e.g. OMP_WAIT_POLICY on a shared machine).
        "env": {k: os.environ[k] for k in _THREAD_VARS if k in os.environ},
    }
    try:
        # Other jobs on the machine skew timings; the load average says how busy it was.
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        pass
    return info


def machine_description() -> str:
    """One line: CPU model, cores, torch version and threads, python version (and GPU, load)."""
    m = machine_info()
    parts = [
        f"CPU {m['cpu']}",
        f"{m['cores']} cores",
        f"torch {m['torch']}",
        f"{m['torch_threads']} torch threads",
        f"python {m['python']}",
    ]
    if m["cuda"]:
        parts.append(f"GPU {m['cuda']}")
    if "load_average_1m" in m:
        parts.append(f"load average {m['load_average_1m']}")
    parts += [f"{k}={v}" for k, v in m["env"].items()]
    return "machine: " + ", ".join(parts)


def load_warning() -> str | None:
    """A warning line when other jobs keep the CPUs busy (timings are then unreliable)."""
    m = machine_info()
    load = m.get("load_average_1m")
    if load is None or load < 0.5 * m["cores"]:
        return None
    hint = ""
    if m["torch_threads"] > 1 and "OMP_WAIT_POLICY" not in m["env"]:
        # Seen on a shared 2-core box: with 2 OpenMP threads, each parallel torch op waited
        # ~12 ms for the second thread; OMP_WAIT_POLICY=PASSIVE or --threads 1 avoided it.
        hint = "; with several torch threads try OMP_WAIT_POLICY=PASSIVE or --threads 1"
    return f"warning: load average {load} on {m['cores']} cores: other jobs are running and timings will be noisy{hint}"


def announce_machine() -> None:
    """Print the machine line, and the load warning when other jobs are running."""
    print(machine_description(), flush=True)
    if warning := load_warning():
        print(warning, flush=True)


# ----------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Timing:
    """Seconds per call of a timed function."""

    median: float
    times: tuple[float, ...]  # per repeat, each averaged over `calls` calls
    calls: int  # calls per repeat (chosen so that a repeat lasts at least `min_time`)

    @property
    def spread(self) -> float:
        """(max - min) / median over the repeats: how noisy the machine was."""
        return (max(self.times) - min(self.times)) / self.median


def time_it(
    fn: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
    min_time: float = 0.2,
    sync: Callable[[], None] | None = None,
) -> Timing:
    """Median seconds per call of `fn` over `repeats` repeats, after `warmup` untimed calls.

    Like `timeit.Timer.autorange`: a repeat runs `fn` often enough to last `min_time` seconds
    (fast functions are timed in bulk, so timer resolution and call overhead don't dominate).
    `sync` (e.g. `torch.cuda.synchronize`) runs before each clock read.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - start, 1e-9)
    calls = max(1, math.ceil(min_time / once))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        times.append((time.perf_counter() - start) / calls)
    return Timing(statistics.median(times), tuple(times), calls)


def eval_seconds(run_dir: Path) -> float | None:
    """The seconds a train.py run's evaluations took (`charts/eval_seconds`; None for a run of code
    that did not log them)."""
    from agent.run.logger import read_metrics

    rows = [r for r in read_metrics(run_dir) if "eval/success_rate" in r]
    return None if any("charts/eval_seconds" not in r for r in rows) else sum(r["charts/eval_seconds"] for r in rows)


def profile_ops(fn: Callable[[], Any], calls: int, rows: int = 15) -> tuple[str, list[dict[str, Any]]]:
    """torch.profiler over `calls` calls of `fn`: its table, and the `rows` operators with the
    most self CPU time as dicts (op, calls, self_cpu_ms, share of all self CPU time)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    ops = [
        {
            "op": e.key,
            "calls": e.count,
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
        }
        for e in top
    ]
    return events.table(sort_by="self_cpu_time_total", row_limit=rows), ops


# ----------------------------------------------------------------------------- output
def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None (with a note) when not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install matplotlib): skipping the plot", file=sys.stderr)
        return None
    return plt


def format_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, formats: dict[str, str] | None = None
) -> str:
    """A GitHub-markdown table of `rows` (dicts); `formats` maps a column to a format spec."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])
    formats = formats or {}

    def cell(row: dict, col: str) -> str:
        v = row.get(col, "")
        if v is None or v == "":
            return "-"
        if col in formats and isinstance(v, (int, float)):
            return format(v, formats[col])
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    body = [[cell(r, c) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]

    def line(vals: list[str]) -> str:
        return "| " + " | ".join(v.rjust(w) for v, w in zip(vals, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(columns), sep, *(line(b) for b in body)])


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Timing):
        return _jsonable(asdict(x))
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None  # strict JSON has no NaN/inf; a missing number reads as null
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return _jsonable(x.item())
    return x


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        dirty = subprocess.run(
            "git status --porcelain --untracked-files=no".split(),
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


# The code and the command this process's results come from, read when it starts (a commit made
# while a long benchmark runs does not change what it ran).
STARTED_AT = {"git_commit": git_commit(), "command": shlex.join(["python", *sys.orig_argv[1:]])}


def provenance(module: str, argv: list[str] | None) -> dict[str, str]:
    """The commit now and the command as a user types it (`argv`, or the process's own arguments
    when None), for a results payload: a benchmark called in-process (a test) is not the process's
    own command. Read it before the measurement starts, so a commit made meanwhile is not named."""
    args = sys.argv[1:] if argv is None else argv
    return {"git_commit": git_commit(), "command": shlex.join(["python", "-m", module, *args])}


def run_header(machine: dict[str, Any], args: Any) -> dict[str, Any]:
    """What every suite's results file opens with: the machine, the thread setting and the
    arguments (a dataclass)."""
    import dataclasses

    return {
        "machine": machine,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ},
        "args": dataclasses.asdict(args),
    }


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` as strict JSON (non-finite floats become null), with the commit and command
    that made it (`STARTED_AT`) unless it names its own; returns the path."""
    payload = STARTED_AT | payload
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n")
    return path


@dataclass
class Common:
    """The flags every measuring benchmark takes."""

    repeats: int = 5
    """Repeats of each measurement; the median is reported."""
    out: str = DEFAULT_OUT
    """Directory for the JSON/PNG results."""
    smoke: bool = False
    """Tiny sizes, a few seconds (what CI runs)."""
    seed: int = 0
    """Seed of every generator used."""
    threads: int | None = None
    """torch.set_num_threads before anything runs (default: torch's choice)."""


T = TypeVar("T")


def parse_args(cls: type[T], argv: list[str] | None, module: str, doc: str | None) -> T:
    """A benchmark's command line (tyro, as train.py's): `--help` from the fields' docstrings, a
    bad flag as one `error:` line and exit 2."""
    from agent.run.cli import CliError, parse

    try:
        args, _ = parse(cls, sys.argv[1:] if argv is None else argv, prog=f"python -m {module}", description=doc)
    except CliError as e:
        fail(str(e))
    if isinstance(args, Common) and args.threads is not None and args.threads < 1:
        fail(f"--threads {args.threads} must be at least 1")
    return args


def parse_set(items: list[str] | tuple[str, ...], flag: str) -> dict[str, Any]:
    """`FLAG key=value ...` -> TrainConfig overrides, typed as train.py's flags are: true/false in
    any case for a switch (anything else is refused, never a truthy string), else a Python
    literal, else the text."""
    from agent.run.config import TrainConfig

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in TrainConfig.__dataclass_fields__:
            fail(f"{flag} {item}: must be FIELD=VALUE with a TrainConfig field")
        if TrainConfig.__dataclass_fields__[key].type == "bool":
            if raw.strip().lower() not in ("true", "false"):
                fail(f"{flag} {item}: {key} is a switch; give {key}=true or {key}=false")
            out[key] = raw.strip().lower() == "true"
            continue
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 2: what a benchmark says of input it can't use."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def apply_threads(threads: int | None) -> None:
    """Apply --threads (call before `machine_description`, which reports the thread count)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads {threads} must be at least 1")
        torch.set_num_threads(threads)


def quiet_sb3(model: Any) -> Any:
    """`model` (an SB3 algorithm) with a logger that writes nowhere, returned for chaining."""
    from stable_baselines3.common.logger import Logger

    # SB3's default logger, even at verbose=0, makes an empty SB3-<time> folder in /tmp on every learn().
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model
