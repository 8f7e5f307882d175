"""agent.run.commands: train.py's learners as subcommands, each with its own flags, over shared sections."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.run.commands import LEARNER_CONFIGS, learner_flags, parse_train
from agent.run.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def help_of(*args: str, capfd=None) -> str:
    """`python train.py ARGS --help`: a real process, or with `capfd` the same parse in this one."""
    if capfd is None:
        out = subprocess.run([sys.executable, "train.py", *args, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout + out.stderr
    with pytest.raises(SystemExit) as stop:
        parse_train([*args, "--help"])
    assert stop.value.code in (0, None)
    captured = capfd.readouterr()
    return captured.out + captured.err


def options(text: str) -> set[str]:
    return set(re.findall(r"^│ (--[a-z-]+)", text, flags=re.M))


def test_the_top_level_help_lists_the_learners_and_the_shared_sections():
    text = help_of()
    for name in LEARNER_CONFIGS:
        assert f"• {name}" in text
    for section in ("world options", "budget options", "run options", "logging options"):
        assert section in text
    assert "(default: pathwise)" in text
    assert {"--env", "--num-envs", "--resume", "--wandb-mode"} <= options(text) and len(options(text)) <= 30
    assert "--lookahead" not in options(text) and "--clip-coef" not in options(text)


@pytest.mark.parametrize("name", list(LEARNER_CONFIGS))
def test_a_learners_help_shows_its_own_flags_only(name, capfd):
    shown = options(help_of(name, capfd=capfd))
    assert shown == set(learner_flags(name)) and len(shown) <= 30
    others = {f for other in LEARNER_CONFIGS if other != name for f in learner_flags(other)} - set(learner_flags(name))
    assert not shown & others


def test_shared_flags_stand_anywhere_and_algo_names_the_learner_too():
    a, given = parse_train(["ppo", "--env", "empty", "--clip-coef", "0.1", "--total-timesteps", "1e5"])
    b, _ = parse_train(["--env", "empty", "ppo", "--total-timesteps", "1e5", "--clip-coef", "0.1"])
    c, _ = parse_train(["--algo", "ppo", "--env", "empty", "--clip-coef", "0.1", "--total-timesteps", "100000"])
    assert a == b == c == TrainConfig(algo="ppo", env="empty", clip_coef=0.1, total_timesteps=100_000)
    assert given == {"algo", "env", "clip_coef", "total_timesteps"}
    default, given = parse_train(["--lookahead", "2"])
    assert default == TrainConfig(lookahead=2) and given == {"lookahead"}  # pathwise when none is named


def test_a_value_that_spells_a_learner_is_a_value():
    cfg, _ = parse_train(["--run-name", "ppo", "reinforce"])
    assert cfg.run_name == "ppo" and cfg.algo == "reinforce"


def test_resume_without_a_learner_continues_with_the_runs_own(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig(algo="ppo").to_dict()))
    cfg, given = parse_train(["--resume", str(run), "--clip-coef", "0.3"])
    assert cfg.algo == "ppo" and cfg.clip_coef == 0.3 and given == {"resume", "clip_coef"}
