"""train.py end to end: real subprocesses on tiny budgets (a few seconds each).

Each run uses `--env empty` with 64 envs x 8 steps, so an update is 512 env steps; the budget
is what the CLI tests need (files, resume, signals, wandb), not learning (see test_learning.py).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_one_line_error, clean_env, rows, run_train

import train
from agent.run.checkpoint import load_checkpoint
from agent.run.config import TrainConfig
from agent.run.resolve import eval_seeds

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("config.json", "checkpoint.pt", "metrics.jsonl", "final_eval.json")
TIMING_KEYS = {"charts/SPS", "charts/eval_seconds", "wall_clock_s"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def pathwise_run(workdir) -> Path:
    """One tiny pathwise run shared by the tests that only read it (or copy it first)."""
    proc = run_train(
        [
            *TINY,
            *"--algo pathwise --wandb-mode disabled --runs-dir".split(),
            str(workdir / "runs"),
            "--run-name",
            "pathwise",
        ],
        workdir / "home",
    )
    assert proc.returncode == 0, proc.stderr
    return workdir / "runs" / "pathwise"


# ------------------------------------------------------------------ every algorithm runs
@pytest.mark.parametrize("algo", ["pathwise", "reinforce", "ppo"])
def test_each_algo_writes_a_complete_run(algo, workdir, pathwise_run):
    if algo == "pathwise":
        run_dir = pathwise_run
    else:
        proc = run_train(
            [
                *TINY,
                "--algo",
                algo,
                "--wandb-mode",
                "disabled",
                "--runs-dir",
                str(workdir / "runs"),
                "--run-name",
                algo,
            ],
            workdir / "home",
        )
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        run_dir = workdir / "runs" / algo
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), f"{algo} run lacks {name}"
    assert json.loads((run_dir / "config.json").read_text())["algo"] == algo
    final = json.loads((run_dir / "final_eval.json").read_text())
    assert final["global_step"] == 4096 and final["episodes"] == 16
    assert 0.0 <= final["success_rate"] <= 1.0
    steps = [r["global_step"] for r in rows(run_dir)]
    assert steps[0] == 512 and steps[-1] == 4096 and steps == sorted(steps)
    # --eval-every 2048 with updates of 512 steps: after 1 and 2 updates, then every 2048.
    assert [r["global_step"] for r in rows(run_dir) if "eval/success_rate" in r] == [512, 1024, 2048, 4096]
    assert load_checkpoint(run_dir)["global_step"] == 4096


def test_the_config_used_is_recorded_and_steps_follow_it(workdir):
    # One default configuration for every world: a slippery lake gets the same settings as any
    # map, and the run's config.json records them all, resolved (obs: one-hot cells).
    slippery = (
        "--env FrozenLake-v1 --env-kwargs map_name:4x4 is_slippery:True "
        "--num-envs 64 --horizon 4 --total-timesteps 1024 --eval-every 0 "
        "--eval-episodes 8 --no-progress"
    ).split()
    proc = run_train(
        [*slippery, "--wandb-mode", "disabled", "--runs-dir", str(workdir / "runs"), "--run-name", "slippery"],
        workdir / "home",
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = workdir / "runs" / "slippery"
    config = json.loads((run_dir / "config.json").read_text())
    default = TrainConfig().to_dict()
    for key in ("lookahead", "explore_bonus", "actor_warmup", "logit_penalty", "backup_steps", "state_norm"):
        assert config[key] == default[key], key
    assert config["obs"] == "onehot" and config["horizon"] == 4
    assert config["explore_starts"] == 0.5  # resolved: a gridworld's default (0 on a black-box env)
    # The seeds derived from --seed are written out too, as the run used them.
    cfg = TrainConfig.from_dict(config)
    assert config["derived_seeds"] == {
        "train": 0,
        "validation": eval_seeds(cfg, "validation"),
        "test": eval_seeds(cfg, "test"),
    }
    assert config["derived_seeds"]["test"]["env"] != config["derived_seeds"]["validation"]["env"] != 0
    assert [r["global_step"] for r in rows(run_dir) if "losses/policy_loss" in r] == [256, 512, 768, 1024]


def test_a_run_from_before_the_current_settings_resumes_as_it_was_trained(workdir):
    # A config written before the look-ahead, exploring starts, logit penalty, actor warm-up and
    # actor steps and state norm existed was trained through the whole window, from the world's
    # start, with none of them; it goes on so.
    run_dir = workdir / "runs" / "old_run"
    assert (
        train.main(
            [
                *TINY,
                *"--wandb-mode disabled --total-timesteps 1024 --runs-dir".split(),
                str(workdir / "runs"),
                "--run-name",
                "old_run",
            ]
        )
        == 0
    )
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    for key in ("lookahead", "explore_starts", "logit_penalty", "actor_warmup", "actor_steps", "state_norm"):
        del state["config"][key]
    torch.save(state, run_dir / "checkpoint.pt")
    assert train.main(["--resume", str(run_dir), "--total-timesteps", "2048", "--no-progress"]) == 0
    resumed = load_checkpoint(run_dir)
    assert resumed["global_step"] == 2048
    old = ("lookahead", "explore_starts", "logit_penalty", "actor_steps", "state_norm")
    assert {k: resumed["config"][k] for k in old} == {
        "lookahead": 8,
        "explore_starts": 0.0,
        "logit_penalty": 0.0,
        "actor_steps": 1,
        "state_norm": False,
    }


# ------------------------------------------------------------------ reproducibility
def test_same_seed_gives_identical_metrics(workdir, pathwise_run):
    proc = run_train(
        [
            *TINY,
            *"--algo pathwise --wandb-mode disabled --runs-dir".split(),
            str(workdir / "runs"),
            "--run-name",
            "pathwise_again",
        ],
        workdir / "home",
    )
    assert proc.returncode == 0, proc.stderr
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rs]  # noqa: E731
    first, second = strip(rows(pathwise_run)), strip(rows(workdir / "runs" / "pathwise_again"))
    assert len(first) == len(second) > 0
    for a, b in zip(first, second, strict=True):
        assert a == b  # exact: same seed, same thread count, same CPU kernels
    runs = (pathwise_run, workdir / "runs" / "pathwise_again")
    final = [json.loads((d / "final_eval.json").read_text()) for d in runs]
    assert {k: v for k, v in final[0].items() if k not in TIMING_KEYS} == {
        k: v for k, v in final[1].items() if k not in TIMING_KEYS
    }


def test_evaluations_leave_training_as_it_was(workdir, pathwise_run):
    """The training rows of a run that never evaluates until the end are those of one that
    evaluates four times on the way: evaluation draws from none of training's generators."""
    no_evals = [*TINY]
    no_evals[no_evals.index("--eval-every") + 1] = "0"
    proc = run_train(
        [*no_evals, *"--wandb-mode disabled --runs-dir".split(), str(workdir / "runs"), "--run-name", "no_evals"],
        workdir / "home",
    )
    assert proc.returncode == 0, proc.stderr

    def training(run_dir: Path) -> list[dict]:
        return [
            {k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows(run_dir) if "losses/policy_loss" in r
        ]

    assert training(workdir / "runs" / "no_evals") == training(pathwise_run) != []


# ------------------------------------------------------------------ resume
def test_resume_continues_the_step_count(workdir, pathwise_run):
    run_dir = workdir / "resumed"
    shutil.copytree(pathwise_run, run_dir)
    before = rows(run_dir)
    proc = run_train(["--resume", str(run_dir), "--total-timesteps", "8192"], workdir / "home")
    assert proc.returncode == 0, proc.stderr
    after = rows(run_dir)
    assert after[: len(before)] == before  # appended, not rewritten
    new_steps = [r["global_step"] for r in after[len(before) :]]
    assert new_steps[0] == 4096 + 512, "the resumed run restarted its step count"
    assert new_steps == sorted(new_steps) and new_steps[-1] == 8192
    assert load_checkpoint(run_dir)["global_step"] == 8192
    assert json.loads((run_dir / "final_eval.json").read_text())["global_step"] == 8192
    # The stored config keeps the run's settings; the flag given on the command line wins.
    config = json.loads((run_dir / "config.json").read_text())
    assert config["total_timesteps"] == 8192 and config["env"] == "empty" and config["num_envs"] == 64


# ------------------------------------------------------------------ SIGINT
def test_sigint_saves_a_checkpoint_and_exits_cleanly(workdir):
    runs = workdir / "runs"
    run_dir = runs / "interrupted"
    proc = subprocess.Popen(
        [
            sys.executable,
            "train.py",
            *TINY,
            *("--total-timesteps 100000000 --eval-every 0 --wandb-mode disabled --runs-dir").split(),
            str(runs),
            "--run-name",
            "interrupted",
        ],
        cwd=ROOT,
        env=clean_env(workdir / "home"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 90
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().strip()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, "no metrics row within 90 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert f"--resume {run_dir}" in stderr
    step = load_checkpoint(run_dir)["global_step"]
    assert step == rows(run_dir)[-1]["global_step"] > 0
    assert not (run_dir / "final_eval.json").exists()

    # The hint works, and --resume also takes the checkpoint file itself.
    proc = run_train(
        ["--resume", str(run_dir / "checkpoint.pt"), "--total-timesteps", str(step + 512)], workdir / "home"
    )
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(run_dir)["global_step"] == step + 512


# ------------------------------------------------------------------ damaged checkpoints
# Starts like a pickle of protocol 73 (see tests/test_evaluate.py): torch warns before failing.
GARBAGE = b"\x80\x49" + bytes(range(256)) * 16


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_resume_from_a_damaged_checkpoint_is_one_error_line(damage, workdir, pathwise_run, capsys):
    run_dir = workdir / f"damaged_{damage}"
    shutil.copytree(pathwise_run, run_dir)
    ckpt = run_dir / "checkpoint.pt"
    blob = ckpt.read_bytes()
    ckpt.write_bytes(GARBAGE if damage == "garbage" else blob[: len(blob) // 2])
    args = ["--resume", str(run_dir), "--total-timesteps", "8192"]
    if damage == "garbage":  # through the script
        proc = run_train(args, workdir / "home")
        code, err = proc.returncode, proc.stderr
    else:  # in-process, the same `main`
        code, err = train.main(args), capsys.readouterr().err
    assert code == 2
    assert_one_line_error(err)
    assert str(ckpt) in err and "damaged" in err


def test_resume_of_a_run_whose_critic_an_older_version_built_is_refused_untouched(workdir, pathwise_run, capsys):
    # Before the one-hot critic became a table, it had hidden layers: such a run can't go on.
    run_dir = workdir / "old_critic"
    shutil.copytree(pathwise_run, run_dir)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    S = state["obs_shape"][0]
    state["critic"] = {"body.0.weight": torch.zeros(16, S), "body.0.bias": torch.zeros(16),
                       "head.weight": torch.zeros(1, 16), "head.bias": torch.zeros(1)}  # fmt: skip
    torch.save(state, run_dir / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert train.main(["--resume", str(run_dir), "--total-timesteps", "8192"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "critic" in err and "start a new run" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before  # nothing written


# ------------------------------------------------------------------ bad flags
RAGGED_MAP = "#####\n#S..#\n#..G##\n#####\n"


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--estimator", "nope"], "--estimator 'nope' is unknown"),
        (["--env", "no_such_map"], "unknown map 'no_such_map'"),
        (["--num-envs", "0"], "--num-envs 0"),
        (["--horizon", "-1"], "--horizon -1 is out of range: it must be an integer >= 1"),
        (["--maze-pool", "-2"], "--maze-pool -2"),
        (["--explore-bonus", "-0.1"], "--explore-bonus -0.1 is out of range: it must be a finite number >= 0"),
        (["--entropy-coef", "-1"], "--entropy-coef -1.0 is out of range"),
        (["--actor-warmup", "-5"], "--actor-warmup -5 is out of range"),
        (["--env", "maze:7x7", "--no-value-map"], "reads its critic as a table of cells"),
        (["--env-kwargs", "badformat"], "key:value"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--env", "RAGGED"], "row 2 has 6 cells"),
        (["--resume", "MISSING"], "no checkpoint at"),
        (["--algo", "ppo", "--estimator", "st-gs"], "--estimator is a flag of pathwise, and this run trains ppo"),
        (["reinforce", "--tau", "2", "--lookahead", "2"], "--tau is a flag of pathwise, and this run trains reinforce"),
        (["--clip-coef", "0.1"], "--clip-coef is a flag of ppo, and this run trains pathwise"),
        (["ppo", "--env", "empty", "--lookahead", "2"], "(python train.py pathwise ...)"),
        (["--algo", "sarsa"], "--algo 'sarsa' is not a learner; choose one of pathwise, ppo, reinforce"),
    ],
)
def test_bad_flags_are_one_error_line(flags, says, tmp_path, capsys):
    """In-process `train.main` (the function the script calls) keeps these fast; the next test
    checks the same path through a real subprocess."""
    if flags == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    ragged = tmp_path / "ragged.txt"
    ragged.write_text(RAGGED_MAP)
    flags = [str(ragged) if f == "RAGGED" else str(tmp_path / "missing") if f == "MISSING" else f for f in flags]
    code = train.main([*TINY, "--wandb-mode", "disabled", "--runs-dir", str(tmp_path / "runs"), *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_line_error(err)
    assert says in err


@pytest.mark.parametrize(
    ("flags", "says"),
    [(["--obs", "nope"], "invalid choice 'nope' for argument '--obs'"), (["--num-envs", "x"], "--num-envs")],
)
def test_tyro_errors_are_one_line_too(flags, says, tmp_path, capsys):
    """tyro's own errors come as a box; the CLI keeps its words on one line."""
    assert train.main([*TINY, "--runs-dir", str(tmp_path / "runs"), *flags]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert says in err and "---" not in err and "─" not in err


@pytest.mark.parametrize(
    "flags, one_line",
    [
        (["--gamma", "1.5"], True),  # our validation
        (["--no-such-flag", "1"], True),  # tyro's box, flattened
    ],
)
def test_bad_flags_through_the_script(flags, one_line, tmp_path):
    proc = run_train(
        [*TINY, "--wandb-mode", "disabled", "--runs-dir", str(tmp_path / "runs"), *flags], tmp_path / "home", timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr, proc.stderr
    assert_one_line_error(proc.stderr)
    assert (
        "--gamma 1.5 is out of range: it must be in [0, 1)" if flags[0] == "--gamma" else "--no-such-flag"
    ) in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_threads_flag_sets_torchs_thread_count(tmp_path):
    before = torch.get_num_threads()
    try:
        assert (
            train.main(
                [*TINY, *"--threads 2 --wandb-mode disabled --runs-dir".split(), str(tmp_path), "--run-name", "r"]
            )
            == 0
        )
        assert torch.get_num_threads() == 2
        assert json.loads((tmp_path / "r" / "config.json").read_text())["threads"] == 2
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ --num-seeds
def test_num_seeds_trains_each_seed_as_a_run_of_its_own(workdir):
    from test_logger import wandb_history

    from agent.evaluate import evaluate_checkpoint

    runs = workdir / "runs"
    proc = run_train(
        [*TINY, *"--num-seeds 2 --seed 5 --wandb-mode offline --runs-dir".split(), str(runs), "--run-name", "group"],
        workdir / "home",
    )
    assert proc.returncode == 0, proc.stderr
    group = runs / "group"
    assert json.loads((group / "config.json").read_text())["num_seeds"] == 2
    for seed in (5, 6):
        run_dir = group / f"seed-{seed}"
        config = json.loads((run_dir / "config.json").read_text())
        assert (config["seed"], config["num_seeds"], config["wandb_group"]) == (seed, 1, "group")
        for name in RUN_FILES:
            assert (run_dir / name).is_file(), name
        steps = [r["global_step"] for r in rows(run_dir) if "losses/policy_loss" in r]
        assert steps == list(range(512, 4097, 512))  # each seed's own env steps, 64 envs x 8 a update
        history = wandb_history(run_dir)  # a wandb run of its own, with its own metrics
        assert [h["losses/policy_loss"] for h in history if "losses/policy_loss" in h] == pytest.approx(
            [r["losses/policy_loss"] for r in rows(run_dir) if "losses/policy_loss" in r]
        )
        final = json.loads((run_dir / "final_eval.json").read_text())
        again = evaluate_checkpoint(run_dir, episodes=16, device="cpu")  # its kept policy
        assert again["normalized_score"] == pytest.approx(final["normalized_score"])
    losses = [[r["losses/policy_loss"] for r in rows(group / f"seed-{s}") if "losses/policy_loss" in r] for s in (5, 6)]
    assert losses[0] != losses[1], "two seeds logged the same numbers"

    # The group is continued seed by seed; each seed's directory is a run that resumes on its own.
    proc = run_train(["--resume", str(group)], workdir / "home")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr)
    assert "seed-K" in proc.stderr
    proc = run_train(["--resume", str(group / "seed-6"), "--total-timesteps", "5120"], workdir / "home")
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(group / "seed-6")["global_step"] == 5120
