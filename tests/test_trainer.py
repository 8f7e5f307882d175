"""agent.trainer: one run's plan, set-up, loop and finish, in process (`train.main` calls it)."""

from __future__ import annotations

import pytest
from conftest import TINY

import envs
import train


@pytest.mark.parametrize(
    "flags",
    [
        [],  # a built-in map: train, evaluate, keep, report
        ["--capture-video", "--num-seeds", "2"],  # GIFs and members each evaluate the same world
        ["--env", "maze:5x5", "--maze-pool", "8", "--algo", "ppo"],  # a family: mazes drawn from one spec
    ],
)
def test_a_run_builds_its_world_once(tmp_path, monkeypatch, flags):
    built = []
    make_world = envs.make_world

    def counting(*args, **kwargs):
        built.append(args[0] if args else kwargs.get("spec"))
        return make_world(*args, **kwargs)

    monkeypatch.setattr(envs, "make_world", counting)  # what agent.config.build_world calls
    code = train.main([*TINY, "--wandb-mode", "disabled", "--runs-dir", str(tmp_path / "runs"), *flags])
    assert code == 0
    assert len(built) == 1, built
    # A resume plans again from the stored config: one more build, not one per env.
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    if "--num-seeds" not in flags:
        built.clear()
        assert train.main(["--resume", str(run), "--total-timesteps", "8192", "--no-progress"]) == 0
        assert len(built) == 1, built
