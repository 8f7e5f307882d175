"""`python -m agent.evaluate` on a checkpoint that a real (tiny) train.py run wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agent import evaluate as evaluate_cli

ROOT = Path(__file__).resolve().parents[1]
# empty is 9x9 (one-hot obs of 81 cells); this map has the same size and a wall to go around.
WALLED_9X9 = """
#########
#S..#...#
#...#...#
#...#...#
#.......#
#...#...#
#...#...#
#...#..G#
#########
"""


def env_vars(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return env | {"HOME": str(tmp), "OMP_NUM_THREADS": "1"}  # see tests/test_train.py


def run_module(module: str, args: list[str], tmp: Path, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env_vars(tmp),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evaluate")
    proc = subprocess.run(
        [
            sys.executable,
            *(
                "train.py --env empty --num-envs 64 --horizon 8 --total-timesteps 2048 "
                "--eval-every 0 --eval-episodes 8 --no-progress --wandb-mode disabled "
                "--runs-dir"
            ).split(),
            str(tmp),
            "--run-name",
            "tiny",
        ],
        cwd=ROOT,
        env=env_vars(tmp),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return tmp / "tiny"


def test_json_output(run_dir, tmp_path):
    proc = run_module("agent.evaluate", [str(run_dir), "--episodes", "32", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # exactly one JSON object, nothing else on stdout
    assert {"success_rate", "mean_return", "mean_length", "normalized_score", "episodes"} <= set(result)
    assert result["episodes"] == 32
    assert 0.0 <= result["success_rate"] <= 1.0
    assert 1 <= result["mean_length"] <= 50  # empty's time limit is 50 steps
    assert result["global_step"] == 2048 and result["greedy"] is True


def test_human_summary_and_sampling(run_dir, capsys):
    """In-process: the same `main` the module runs; sampled episodes with one seed repeat."""
    args = [str(run_dir / "checkpoint.pt"), *"--episodes 16 --sample --seed 3".split()]
    assert evaluate_cli.main(args) == 0
    text = capsys.readouterr().out
    assert "success rate" in text and "16 sampled episodes" in text
    first = evaluate_cli.evaluate_checkpoint(run_dir, episodes=16, greedy=False, seed=3)
    again = evaluate_cli.evaluate_checkpoint(run_dir, episodes=16, greedy=False, seed=3)
    assert first == again


def test_gif(run_dir, tmp_path):
    imageio = pytest.importorskip("imageio.v3")
    gif = tmp_path / "out" / "episode.gif"
    # Sampled actions: the tiny run's greedy policy may push into a wall, a one-frame GIF.
    args = [str(run_dir), "--episodes", "4", "--sample", "--seed", "0", "--gif", str(gif)]
    proc = run_module("agent.evaluate", args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    frames = imageio.imread(gif, index=None)  # (N, H, W, C)
    assert frames.shape[0] > 1
    assert frames.shape[1:3] == (9 * 16, 9 * 16)  # 9x9 cells of 16 px
    assert str(gif) in proc.stdout


def test_another_map_of_the_same_size(run_dir, tmp_path, capsys):
    other = tmp_path / "walled.txt"
    other.write_text(WALLED_9X9)
    assert evaluate_cli.main([str(run_dir), "--env", str(other), "--episodes", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["env"] == str(other) and result["episodes"] == 8


def test_mismatched_observation_shape_is_one_error_line(run_dir, capsys):
    assert evaluate_cli.main([str(run_dir), "--env", "four_rooms"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "(169,)" in err and "(81,)" in err  # four_rooms is 13x13, empty 9x9


# Fixed garbage that starts like a pickle (0x80 = PROTO, protocol 73): random bytes did so now and
# then, and torch then printed a UserWarning that broke the one-line error.
GARBAGE = b"\x80\x49" + np.random.default_rng(0).bytes(2046)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "not_ours"])
def test_bad_checkpoints_are_one_error_line(damage, run_dir, tmp_path, capsys):
    bad = tmp_path / "checkpoint.pt"
    blob = (run_dir / "checkpoint.pt").read_bytes()
    if damage == "garbage":
        bad.write_bytes(GARBAGE)
    elif damage == "truncated":
        bad.write_bytes(blob[: len(blob) // 3])
    elif damage == "not_ours":
        torch.save({"weights": torch.zeros(3)}, bad)
    if damage == "garbage":  # one through a real subprocess, the rest in-process (the same `main`)
        proc = run_module("agent.evaluate", [str(bad)], tmp_path)
        code, err = proc.returncode, proc.stderr
    else:
        code, err = evaluate_cli.main([str(bad)]), capsys.readouterr().err
    assert code == 2
    assert_one_line_error(err)
    assert str(bad) in err


@pytest.mark.parametrize(
    "args, says", [(["--env", "no_such_map"], "unknown map"), (["--episodes", "0"], "--episodes 0")]
)
def test_bad_arguments_are_one_error_line(args, says, run_dir, capsys):
    assert evaluate_cli.main([str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert says in err
