"""agent.run.trainer: one run's plan, set-up, loop and finish, in process (`train.main` calls it)."""

from __future__ import annotations

import pytest
from conftest import TINY

import envs
import train
from agent.run.trainer import next_eval_step


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

    monkeypatch.setattr(envs, "make_world", counting)  # what agent.run.config.build_world calls
    code = train.main([*TINY, "--wandb-mode", "disabled", "--runs-dir", str(tmp_path / "runs"), *flags])
    assert code == 0
    assert len(built) == 1, built
    # A resume plans again from the stored config: one more build, not one per env.
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    if "--num-seeds" not in flags:
        built.clear()
        assert train.main(["--resume", str(run), "--total-timesteps", "8192", "--no-progress"]) == 0
        assert len(built) == 1, built


def test_a_run_stored_by_the_format_before_the_trainer_resumes_and_evaluates(tmp_path):
    """tests/data/stored-d6eb2c5: config.json, checkpoints and metrics written by commit d6eb2c5
    (train.py before agent.run.trainer): it resumes where it stopped, and its kept policy evaluates."""
    import json
    import shutil
    from pathlib import Path

    from agent.evaluate import evaluate_checkpoint

    run = tmp_path / "stored"
    shutil.copytree(Path(__file__).parent / "data" / "stored-d6eb2c5", run)
    assert train.main(["--resume", str(run), "--total-timesteps", "512", "--no-progress"]) == 0
    final = json.loads((run / "final_eval.json").read_text())
    assert final["global_step"] == 512
    steps = [json.loads(line)["global_step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 512 and 256 in steps  # the stored steps kept, the new ones after them
    stored = json.loads((run / "config.json").read_text())
    assert stored["hidden"] == 16 and stored["env"] == "empty"  # what the run was started with
    assert 0.0 <= evaluate_checkpoint(run, episodes=8)["exact_success_rate"] <= 1.0


@pytest.mark.parametrize(
    ("step", "every", "update", "expected"),
    [
        (0, 200_000, 4096, 4096),  # after the first update,
        (4096, 200_000, 4096, 8192),  # the second,
        (8192, 200_000, 4096, 16384),  # the fourth...
        (131072, 200_000, 4096, 200_000),  # ... then at the multiples of --eval-every
        (200_704, 200_000, 4096, 400_000),
        (12288, 200_000, 4096, 16384),  # a resumed run picks the schedule up where it stands
        (0, 1000, 4096, 1000),  # updates larger than --eval-every: its multiples only
        (4096, 1000, 4096, 5000),
        (0, 0, 4096, None),  # only at the end
    ],
)
def test_evaluations_double_their_gap_until_eval_every(step, every, update, expected):
    assert next_eval_step(step, every, update) == expected


def test_a_budget_of_part_of_an_update_is_said_and_rounded_up_to_whole_updates(tmp_path, capsys):
    flags = [
        *TINY,
        "--total-timesteps",
        "600",
        "--wandb-mode",
        "disabled",
        "--runs-dir",
        str(tmp_path),
        "--run-name",
        "r",
    ]
    assert train.main(flags) == 0
    said = capsys.readouterr().err
    assert "note: --total-timesteps 600 is not a whole number of updates of 512 env steps" in said
    assert "(--num-envs 64 x --horizon 8); the run takes 1024" in said
    assert '"global_step": 1024' in (tmp_path / "r" / "final_eval.json").read_text()
    # Within 1% of the budget the rounding goes unsaid (2M steps in updates of 1,024 is 2,000,896).
    flags[flags.index("600")] = "51250"  # 101 updates, 51,712 steps: 462 more, 0.9%
    assert train.main([*flags, "--overwrite", "--eval-every", "0"]) == 0
    assert "note: --total-timesteps" not in capsys.readouterr().err
