"""`python -m agent.plot`: grouping seeds, averaging them, and the image it writes.

The run directories are written with the real `RunLogger` and `TrainConfig`, with made-up
curves whose mean and spread are known.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent import plot as plot_cli
from agent.run.config import TrainConfig
from agent.run.logger import RunLogger

ROOT = Path(__file__).resolve().parents[1]


def make_run(root: Path, name: str, curve, steps, **config) -> Path:
    """A run directory as train.py leaves it: config.json and metrics.jsonl."""
    cfg = TrainConfig(env="empty", run_name=name, runs_dir=str(root), wandb_mode="disabled", **config)
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    logger = RunLogger(cfg, run_dir)
    for step in steps:
        logger.log({"charts/episodic_return": curve(step), "charts/SPS": 1e4}, int(step))
    logger.finish()
    return run_dir


@pytest.fixture
def runs(tmp_path) -> dict[str, list[Path]]:
    """3 pathwise seeds (returns x/1000 + seed) and 2 ppo seeds (constant), on different x grids."""
    pathwise = [
        make_run(tmp_path, f"pw{s}", lambda x, s=s: x / 1000 + s, range(0, 1001 + 10 * s, 100 + s), seed=s)
        for s in range(3)
    ]
    ppo = [make_run(tmp_path, f"ppo{s}", lambda x: 0.25, range(0, 1001, 50), seed=s, algo="ppo") for s in range(2)]
    return {"pathwise": pathwise, "ppo": ppo}


def test_seeds_group_and_labels_name_the_difference(runs):
    loaded = [plot_cli.load_run(p) for p in runs["pathwise"] + runs["ppo"]]
    groups = plot_cli.group_runs(loaded)
    assert sorted(len(g) for g in groups.values()) == [2, 3]
    labels = sorted(plot_cli.group_labels(groups).values())
    assert labels == ["algo=pathwise  [3 seeds]", "algo=ppo  [2 seeds]"]


def test_one_group_is_labelled_by_what_it_is(runs):
    groups = plot_cli.group_runs([plot_cli.load_run(p) for p in runs["pathwise"]])
    assert list(plot_cli.group_labels(groups).values()) == ["empty · pathwise (st)  [3 seeds]"]


def test_a_wandb_group_wins_over_the_config(tmp_path):
    a = make_run(tmp_path, "a", lambda x: 0.0, range(3), wandb_group="sweep", learning_rate=1e-3)
    b = make_run(tmp_path, "b", lambda x: 0.0, range(3), wandb_group="sweep", learning_rate=3e-3)
    groups = plot_cli.group_runs([plot_cli.load_run(a), plot_cli.load_run(b)])
    assert list(plot_cli.group_labels(groups).values()) == ["sweep  [2 runs]"]


def test_aggregate_interpolates_onto_a_common_grid(runs):
    curves = [plot_cli.load_run(p).curve("charts/episodic_return", "global_step") for p in runs["pathwise"]]
    grid, mean, low, high = plot_cli.aggregate(curves, "minmax")
    # Seeds end at 1000, 1010 and 1020 (their last logged steps): the common range is [0, 1000].
    assert grid[0] == 0 and grid[-1] == 1000
    np.testing.assert_allclose(mean, grid / 1000 + 1, atol=1e-9)  # linear curves interpolate exactly
    np.testing.assert_allclose(low, grid / 1000, atol=1e-9)
    np.testing.assert_allclose(high, grid / 1000 + 2, atol=1e-9)
    _, mean_s, low_s, high_s = plot_cli.aggregate(curves, "std")
    np.testing.assert_allclose(high_s - mean_s, np.sqrt(2 / 3), atol=1e-9)


def test_a_step_logged_twice_keeps_the_last_value(tmp_path):
    run = make_run(tmp_path, "r", lambda x: 0.0, [0, 10, 20])
    with open(run / "metrics.jsonl", "a") as f:  # what a resume after a crash can leave
        f.write(json.dumps({"global_step": 10, "charts/episodic_return": 5.0}) + "\n")
    xs, ys = plot_cli.load_run(run).curve("charts/episodic_return", "global_step")
    assert xs.tolist() == [0, 10, 20] and ys.tolist() == [0.0, 5.0, 0.0]


def test_smoothing():
    y = np.array([0.0, 1.0, 1.0, 1.0])
    assert plot_cli.smooth(y, 0.0) is y
    s = plot_cli.smooth(y, 0.5)
    assert s[0] == 0.0 and 0 < s[1] < s[2] < s[3] < 1


def test_cli_writes_a_png(runs, tmp_path):
    out = tmp_path / "figs" / "curve.png"
    dirs = [str(p) for p in runs["pathwise"] + runs["ppo"]]
    proc = subprocess.run(
        [sys.executable, "-m", "agent.plot", *dirs, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] > 200 and image.shape[1] > 300
    # Two groups in two colours (matplotlib's C0 blue and C1 orange) were drawn.
    for rgb in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):
        assert (np.abs(image.astype(int) - rgb).sum(-1) < 30).sum() > 100, f"no {rgb} line"


def test_several_metrics_make_several_panels(runs, tmp_path):
    out = tmp_path / "two.png"
    code = plot_cli.main(
        [*map(str, runs["ppo"]), "--out", str(out), *"--metric charts/episodic_return charts/SPS --smooth 0.5".split()]
    )
    assert code == 0 and out.stat().st_size > 0


@pytest.mark.parametrize(
    "case, says",
    [
        ("missing_dir", "is not a run directory"),
        ("no_metrics", "has no metrics.jsonl"),
        ("unknown_metric", "no rows with both 'eval/nope'"),
        ("bad_smooth", "--smooth 1.5"),
    ],
)
def test_errors_are_one_line(case, says, runs, tmp_path, capsys):
    args = [str(runs["ppo"][0]), "--out", str(tmp_path / "x.png")]
    if case == "missing_dir":
        args[0] = str(tmp_path / "nope")
    elif case == "no_metrics":
        (tmp_path / "empty_run").mkdir()
        args[0] = str(tmp_path / "empty_run")
    elif case == "unknown_metric":
        args += ["--metric", "eval/nope"]
    elif case == "bad_smooth":
        args += ["--smooth", "1.5"]
    assert plot_cli.main(args) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], err
    assert not (tmp_path / "x.png").exists()


def test_two_runs_of_one_seed_are_refused_and_a_short_run_is_named(tmp_path, capsys):
    # An aborted try and a full run of the same seed are not two seeds; two seeds of unequal
    # length are drawn where both have data, and the plot says where it cut.
    import json

    from agent.plot import plot

    def fake_run(name: str, seed: int, steps: int) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"env": "empty", "algo": "pathwise", "seed": seed}))
        (d / "metrics.jsonl").write_text(
            "".join(
                json.dumps({"global_step": s, "charts/episodic_return": s / steps}) + "\n"
                for s in range(1000, steps + 1, 1000)
            )
        )
        return d

    aborted, full, other = fake_run("aborted", 0, 5000), fake_run("full", 0, 20000), fake_run("other", 1, 20000)
    with pytest.raises(ValueError, match="same experiment with seed 0"):
        plot([aborted, full], tmp_path / "x.png", metrics=["charts/episodic_return"])
    out = plot([aborted, other], tmp_path / "y.png", metrics=["charts/episodic_return"])
    assert out.stat().st_size > 0
    err = capsys.readouterr().err
    assert "drawn to global_step 5k (of 20k), where aborted ends" in err
