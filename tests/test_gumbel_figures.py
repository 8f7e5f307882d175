"""agent.gumbel_figures: `python -m agent.gumbel_figures --out DIR` draws both README figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_command_writes_both_figures_as_images(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image as mpimg

    done = subprocess.run(
        [sys.executable, "-m", "agent.gumbel_figures", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    printed = [Path(line) for line in done.stdout.split()]
    assert {p.name for p in printed} == {"gumbel_pdf.png", "gumbel_softmax_temperatures.png"}
    for path in printed:
        image = mpimg.imread(path)  # a real PNG, not an empty file
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
        assert image[..., :3].std() > 0.05  # something is drawn on it


def test_a_bad_flag_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, *"-m agent.gumbel_figures --seed x".split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--seed" in done.stderr
