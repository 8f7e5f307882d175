"""agent.sweep: a grid on Optuna's RDB storage, two real worker processes on one SQLite file, one
killed mid-trial: every planned trial completes exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, assert_one_line_error, clean_env

optuna = pytest.importorskip("optuna")

from agent import sweep  # noqa: E402

TRAIN = (
    "--env empty --num-envs 64 --horizon 8 --total-timesteps 16384 "
    "--eval-every 8192 --eval-episodes 16 --wandb-mode disabled "
    "--no-progress"
).split()


def trials(url: str, study: str):
    return optuna.load_study(study_name=study, storage=url).get_trials()


def worker_command(url: str, runs: Path, *extra: str) -> list[str]:
    """`python -m agent.sweep work` on study "s" of `url`, its runs under `runs`."""
    return [
        sys.executable,
        *"-m agent.sweep work --storage".split(),
        url,
        "--study",
        "s",
        "--runs-dir",
        str(runs),
        *extra,
    ]


def test_plan_is_checked_before_anything_is_written(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert sweep.main(["plan", "--storage", url, "--study", "s", "--", *TRAIN, "--seed", "3"]) == 2
    assert "--" in capsys.readouterr().err
    assert sweep.main(["plan", "--storage", url, *"--study s --estimators nope --".split(), *TRAIN]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "--estimators nope: unknown" in err
    assert sweep.main(["plan", "--storage", url, "--study", "s", "--", *TRAIN, "--gamma", "2"]) == 2
    assert "--gamma 2.0 is out of range" in capsys.readouterr().err
    assert sweep.main(["plan", "--storage", url, "--study", "s", "--", *TRAIN, "--algo", "ppo"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "the sweep searches --estimator and --tau, flags of pathwise" in err and "train ppo" in err
    assert sweep.main(["plan", "--storage", url, *"--study s --seeds 0 --".split(), *TRAIN]) == 0
    assert sweep.main(["plan", "--storage", url, "--study", "s", "--", *TRAIN]) == 2  # planned once
    assert "already exists" in capsys.readouterr().err
    assert [t.state.name for t in trials(url, "s")] == ["WAITING"]
    assert sweep.main(["work", "--storage", url, "--study", "other"]) == 2
    assert sweep.main(["report", "--storage", f"sqlite:///{tmp_path / 'typo.db'}", "--study", "s"]) == 2
    assert "no such database file" in capsys.readouterr().err and not (tmp_path / "typo.db").exists()


def test_two_workers_one_killed_mid_trial_every_trial_completes_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    assert (
        sweep.main(["plan", "--storage", url, *"--study s --estimators reinmax st --seeds 0 1 --".split(), *TRAIN]) == 0
    )
    planned = {(e, s) for e in ("reinmax", "st") for s in (0, 1)}
    work = worker_command(url, tmp_path / "runs", *"--heartbeat-s 1 --grace-s 3".split())
    env = clean_env(tmp_path / "home")
    a, b = (
        subprocess.Popen(work, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    )
    try:
        _kill_one_and_check(a, b, url, planned, tmp_path, env)
    finally:  # a failed check leaves no worker behind
        for w in (a, b):
            if w.poll() is None:
                w.kill()
                w.wait()


def _kill_one_and_check(a, b, url, planned, tmp_path, env):
    deadline = time.time() + 120
    while sum(t.state.name == "RUNNING" for t in trials(url, "s")) < 2:  # both workers inside a trial
        for name, w in (("a", a), ("b", b)):
            if w.poll() is not None:
                pytest.fail(f"worker {name} exited early ({w.returncode}): {w.stderr.read()[-2000:]}")
        assert time.time() < deadline, "the workers never ran two trials at once"
        time.sleep(0.1)
    a.send_signal(signal.SIGKILL)
    a.wait()
    out, err = b.communicate(timeout=300)
    assert b.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    done = [t for t in trials(url, "s") if t.state.name == "COMPLETE"]
    runs = Counter((t.params["estimator"], t.params["seed"]) for t in done)
    assert runs == Counter(planned), runs  # none lost, none twice
    failed = [t for t in trials(url, "s") if t.state.name == "FAIL"]
    assert len(failed) == 1  # the killed worker's trial, whose parameters ran again
    # (killed maybe before it had all its parameters: the plan it was given is in its attributes)
    assert (failed[0].user_attrs["planned"]["estimator"], failed[0].user_attrs["planned"]["seed"]) in planned
    assert all((tmp_path / "runs" / "s" / f"trial-{t.number:04d}" / "final_eval.json").exists() for t in done)
    assert (
        "study s: 4 complete, 1 fail"
        in subprocess.run(
            [sys.executable, *"-m agent.sweep report --storage".split(), url, "--study", "s"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def test_a_trial_whose_worker_died_before_or_after_its_first_heartbeat_runs_again(tmp_path):
    """The two states a killed worker can leave: a trial taken but not started (no heartbeat, no
    STARTED mark), and one started (its heartbeat recorded before the mark). Both come back."""
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    assert sweep.main(["plan", "--storage", url, *"--study s --seeds 0 1 --".split(), *TRAIN]) == 0
    storage = sweep._storage(url, sweep.Work(url, "s", heartbeat_s=1, grace_s=1))
    study = optuna.load_study(study_name="s", storage=storage)
    study.ask()  # a dead worker's first trial: taken, RUNNING, never started
    started = study.ask()  # its second: started
    storage.record_heartbeat(started._trial_id)  # the order the objective writes them in
    started.set_user_attr(sweep.STARTED, started.number)
    worker = subprocess.run(
        worker_command(url, tmp_path / "runs", *"--heartbeat-s 1 --grace-s 1".split()),
        cwd=ROOT,
        env=clean_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    states = Counter((t.state.name, t.user_attrs["planned"]["seed"]) for t in trials(url, "s"))
    assert states == Counter({("FAIL", 0): 1, ("FAIL", 1): 1, ("COMPLETE", 0): 1, ("COMPLETE", 1): 1}), states


def test_the_wandb_sweep_config_gives_flags_train_py_takes():
    import itertools

    import yaml

    from agent.run.cli import parse
    from agent.run.config import TrainConfig
    from agent.run.resolve import validate

    spec = yaml.safe_load((ROOT / "docs" / "sweeps" / "wandb.yaml").read_text())
    assert (ROOT / spec["program"]).exists()
    params = spec["parameters"]
    grid = [[(k, v) for v in p.get("values", [p.get("value")])] for k, p in params.items()]
    for combo in itertools.product(*grid):
        cfg, given = parse(TrainConfig, [f"--{k}={v}" for k, v in combo], prog="train.py")  # as wandb agent passes
        validate(cfg)
        assert given == set(params) and all(getattr(cfg, k) == v for k, v in combo)
    assert spec["metric"]["name"] == "eval/normalized_score"


def test_ctrl_c_in_a_worker_saves_the_run_and_queues_the_trial_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    assert (
        sweep.main(
            ["plan", "--storage", url, *"--study s --seeds 0 --".split(), *TRAIN, "--total-timesteps", "2000000"]
        )
        == 0
    )
    worker = subprocess.Popen(
        worker_command(url, tmp_path / "runs"),
        cwd=ROOT,
        env=clean_env(tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "runs" / "s" / "trial-0000" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.stat().st_size > 0):  # training, not starting
        assert time.time() < deadline and worker.poll() is None, worker.stderr.read() if worker.poll() else ""
        time.sleep(0.1)
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert "Traceback" not in err and "queued again" in err
    assert (tmp_path / "runs" / "s" / "trial-0000" / "checkpoint.pt").exists()  # the run was saved
    states = [(t.state.name, t.user_attrs["planned"]["seed"]) for t in trials(url, "s")]
    assert states == [("PRUNED", 0), ("WAITING", 0)]
