"""Shared pytest options (`--runslow` runs the tests marked `slow`, long learning runs), running
train.py as a user does (a private HOME, one thread), and the runner of the benchmarks' `--smoke`
mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def run_smoke(prefix: list[str], args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`python PREFIX --smoke ARGS` from the repository root, as CI runs a benchmark: it must exit 0
    and start by describing the machine."""
    proc = subprocess.run(
        [sys.executable, *prefix, "--smoke", *args],
        cwd=ROOT,
        env={**os.environ, "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("machine: CPU "), proc.stdout[:200]
    return proc


# A run of a few seconds: train.py's flags for the tests that need a whole run, not a good policy.
TINY = (
    "--env empty --num-envs 64 --horizon 8 --total-timesteps 4096 --eval-every 2048 --eval-episodes 16 --no-progress"
).split()


def clean_env(home: Path) -> dict[str, str]:
    """The caller's environment with a private HOME (no wandb credentials, nothing leaks out)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    home.mkdir(parents=True, exist_ok=True)
    # One thread: the tests share 2 cores with each other and with whatever else runs; torch's
    # default thread pool then spins more than it computes.
    return env | {"HOME": str(home), "WANDB_DIR": str(home), "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}


def run_train(args: list[str], home: Path, *, timeout: float = 180, env: dict | None = None, script=("train.py",)):
    """train.py with `args` as a user runs it (a private HOME); `script` replaces "train.py", e.g.
    with ("-c", CODE) that calls train.main() after changing the process first."""
    return subprocess.run(
        [sys.executable, *script, *args],
        cwd=ROOT,
        env=env or clean_env(home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def assert_one_line_error(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "Warning" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
