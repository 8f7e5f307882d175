"""Shared pytest options (`--runslow` runs the tests marked `slow`, long learning runs) and the
runner of the benchmarks' `--smoke` mode."""

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
