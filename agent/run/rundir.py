"""A run directory's lifecycle: where it is, who holds it, and what a new run or a resume may
find in it.

- `run_path` keeps every run inside `--runs-dir` (a run name is one plain directory name).
- `RunLock` lets one process write a run at a time: a second gets one line naming the holder.
- `prepare_new` refuses a directory that already holds a run unless asked to overwrite it.
- `truncate_metrics` cuts `metrics.jsonl` back to a checkpoint's step on resume, so the rows
  written after the last checkpoint by a killed process do not appear twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from agent.run.checkpoint import BEST, LATEST
from agent.run.logger import METRICS_FILE

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
FINAL_FILE = "final_eval.json"
# What a run writes; a directory holding any of them holds a run.
RUN_FILES = (CONFIG_FILE, METRICS_FILE, LATEST, BEST, FINAL_FILE, "wandb")
EVENTS = "events.out.tfevents.*"  # TensorBoard's files


class RunDirError(ValueError):
    """A run directory that can't be used as asked; the message is one line with the fix."""


def run_path(runs_dir: str | Path, run_name: str) -> Path:
    """runs_dir / run_name, refusing names that would leave runs_dir."""
    root = Path(runs_dir).resolve()
    path = (root / run_name).resolve()
    if path.parent != root:
        raise RunDirError(
            f"--run-name {run_name!r} would write outside --runs-dir {runs_dir}; give a plain directory name"
        )
    return path


def holds_a_run(path: Path) -> bool:
    return path.is_dir() and (any((path / name).exists() for name in RUN_FILES) or any(path.glob(EVENTS)))


def prepare_new(path: Path, overwrite: bool) -> None:
    """Check (and with `overwrite`, clear) a directory for a new run; writes nothing otherwise."""
    if not holds_a_run(path):
        return
    if not overwrite:
        raise RunDirError(
            f"run directory {path} already holds a run; continue it with --resume {path}, "
            "start over in it with --overwrite, or pick another --run-name"
        )
    for target in [*(path / name for name in RUN_FILES), *path.glob(EVENTS)]:
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


class RunLock:
    """An exclusive advisory lock on `path/.lock` held while a process writes the run (released
    when the process ends, however it ends). The file records the holder's pid and start time."""

    def __init__(self, path: Path) -> None:
        self.path = path / LOCK_FILE
        self.file = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the run's lifetime)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunDirError(
                f"run directory {self.path.parent} is in use by {holder}; wait for it to finish or stop it first"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        f.flush()
        self.file = f
        return self

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the rows of `path/metrics.jsonl` logged after `step` (and a torn last line); returns
    how many rows were dropped. Written atomically."""
    metrics = path / METRICS_FILE
    if not metrics.is_file():
        return 0
    kept, dropped = [], 0
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            dropped += 1
            continue
        if row.get("global_step", 0) <= step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = metrics.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, metrics)
    return dropped
