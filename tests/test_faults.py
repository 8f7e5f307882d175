"""Faults, injected into real train.py processes: kills, signals, closed pipes, concurrent
resumes, bad flags and an unreachable wandb. Each must end in a checkpoint or one clear line,
never in a mixed-up run directory or a traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY, assert_one_line_error, clean_env, rows
from test_logger import read_wandb_records, wandb_history

# A run that takes a while: B x T = 512 env steps an update on the 13x13 four-rooms map.
LONG = (
    "--env four_rooms --num-envs 64 --horizon 8 --total-timesteps 400000 "
    "--eval-every 0 --eval-episodes 8 --no-progress --wandb-mode disabled"
).split()


def start(args: list[str], home: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=kw.pop("env", None) or clean_env(home),
        stdin=subprocess.DEVNULL,
        text=True,
        **kw,
    )


def wait_for(predicate, timeout: float = 60.0, what: str = "a condition") -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def logged_steps(run_dir: Path) -> list[int]:
    if not (run_dir / "metrics.jsonl").exists():
        return []
    return [r["global_step"] for r in rows(run_dir) if "losses/policy_loss" in r]


def checkpoint_step(run_dir: Path) -> int:
    from agent.run.checkpoint import load_checkpoint

    return int(load_checkpoint(run_dir)["global_step"])


# --------------------------------------------------------------------------- kills and resumes
def test_sigkill_leaves_the_wandb_run_closed_with_every_step_sent(tmp_path):
    """wandb's own process outlives a training process killed outright: it logs every row it was
    sent and closes the run as failed (exit code 1), so `wandb sync` has a whole run to upload."""
    from wandb.proto import wandb_internal_pb2

    run_dir = tmp_path / "runs" / "killed"
    proc = start(
        [*LONG[:-2], "--wandb-mode", "offline", "--runs-dir", str(tmp_path / "runs"), "--run-name", "killed"],
        tmp_path / "home",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: len(logged_steps(run_dir)) > 6, what="progress")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    local = logged_steps(run_dir)

    def records() -> list:
        logs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
        out = []
        for raw in read_wandb_records(logs[0]) if logs else []:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            out.append(record)
        return out

    wait_for(lambda: any(r.WhichOneof("record_type") == "exit" for r in records()), what="the wandb run to close")
    (exit_record,) = [r for r in records() if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit.exit_code == 1
    sent = [h["global_step"] for h in wandb_history(run_dir) if "losses/policy_loss" in h]
    # Each row goes to metrics.jsonl, then to wandb: the kill can fall between the two.
    assert sent in (local, local[:-1]), (sent, local)


def test_sigkill_then_resume_leaves_every_step_once(tmp_path):
    run_dir = tmp_path / "runs" / "killed"
    proc = start(
        [*LONG, "--save-every", "4096", "--runs-dir", str(tmp_path / "runs"), "--run-name", "killed"],
        tmp_path / "home",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Kill it between checkpoints: some rows are logged after the last one.
    wait_for(lambda: (run_dir / "checkpoint.pt").exists() and len(logged_steps(run_dir)) > 12, what="progress")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = checkpoint_step(run_dir)
    assert max(logged_steps(run_dir)) > saved  # rows the checkpoint doesn't cover
    done = subprocess.run(
        [sys.executable, "train.py", "--resume", str(run_dir), "--total-timesteps", str(saved + 8192)],
        cwd=ROOT,
        env=clean_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    steps = logged_steps(run_dir)
    assert steps == list(range(512, saved + 8192 + 1, 512)), "every update's row exactly once, in order"


def test_a_second_process_on_one_run_is_refused(tmp_path):
    run_dir = tmp_path / "runs" / "busy"
    first = start(
        [*LONG, "--runs-dir", str(tmp_path / "runs"), *"--run-name busy --save-every 2048".split()],
        tmp_path / "home",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (run_dir / "checkpoint.pt").exists(), what="a first checkpoint")
        before = (run_dir / "metrics.jsonl").read_text()
        second = subprocess.run(
            [sys.executable, "train.py", "--resume", str(run_dir), "--no-progress"],
            cwd=ROOT,
            env=clean_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert_one_line_error(second.stderr)
        assert f"is in use by process {first.pid}" in second.stderr
        assert (run_dir / "metrics.jsonl").read_text().startswith(before)  # not truncated by the refused one
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)


# --------------------------------------------------------------------------- signals
def test_sigint_with_the_output_pipe_closed_still_saves(tmp_path):
    # `python train.py ... 2>&1 | tee log`, then Ctrl-C: tee dies with the same signal, so every
    # later write of ours hits a closed pipe. The checkpoint comes first and the exit is 130.
    run_dir = tmp_path / "runs" / "piped"
    proc = start(
        [
            *LONG[:-3],
            *"--progress --wandb-mode disabled --runs-dir".split(),
            str(tmp_path / "runs"),
            "--run-name",
            "piped",
        ],
        tmp_path / "home",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: len(logged_steps(run_dir)) > 3, what="training")
    proc.stdout.close()  # the reader is gone
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert checkpoint_step(run_dir) >= 512


def test_sigterm_inside_a_long_update_is_honoured_within_a_second(tmp_path):
    # One update of 64 envs x 4096 steps takes tens of seconds here; SIGTERM must not wait for it.
    run_dir = tmp_path / "runs" / "long_update"
    proc = start(
        [
            *(
                "--env four_rooms --num-envs 64 --horizon 4096 --total-timesteps "
                "10000000 --eval-every 0 --no-progress --wandb-mode disabled --runs-dir"
            ).split(),
            str(tmp_path / "runs"),
            "--run-name",
            "long_update",
        ],
        tmp_path / "home",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # metrics.jsonl is opened just before the loop; the first update then runs for many seconds.
    wait_for(lambda: (run_dir / "metrics.jsonl").exists(), what="the loop to start")
    time.sleep(1.0)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    elapsed = time.time() - sent
    err = proc.stderr.read()
    assert code == 143, err
    assert elapsed < 3.0, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in err
    assert checkpoint_step(run_dir) == 0  # the abandoned update counted no steps
    assert f"--resume {run_dir}" in err


# --------------------------------------------------------------------------- run directories
def test_a_used_run_name_is_refused_unless_overwritten(tmp_path, capsys):
    import train

    args = [*TINY, "--wandb-mode", "disabled", "--runs-dir", str(tmp_path / "runs"), "--run-name", "same"]
    assert train.main(args) == 0
    before = (tmp_path / "runs" / "same" / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "already holds a run" in err and "--overwrite" in err
    assert (tmp_path / "runs" / "same" / "metrics.jsonl").read_text() == before
    assert train.main([*args, "--overwrite"]) == 0
    assert logged_steps(tmp_path / "runs" / "same") == list(range(512, 4097, 512))  # one run, not two


def test_resume_applies_the_flags_given_and_refuses_those_it_cannot(tmp_path):
    import train

    runs = tmp_path / "runs"
    assert train.main([*TINY, "--wandb-mode", "disabled", "--runs-dir", str(runs), "--run-name", "r"]) == 0
    config = (runs / "r" / "config.json").read_text()
    # The world can't change under a run: refused before anything is written.
    assert train.main(["--resume", str(runs / "r"), "--env", "four_rooms"]) == 2
    assert (runs / "r" / "config.json").read_text() == config
    # Everything else given applies, the --no-X forms too.
    given = "--no-state-norm --critic none --total-timesteps 5120 --no-progress".split()
    assert train.main(["--resume", str(runs / "r"), *given]) == 0
    stored = json.loads((runs / "r" / "config.json").read_text())
    assert stored["state_norm"] is False and stored["critic"] == "none" and stored["total_timesteps"] == 5120


# --------------------------------------------------------------------------- bad flags
BAD = [
    ("--env FrozenLake-v1 --env-kwargs map_name:9x9".split(), "KeyError: '9x9'"),
    ("--env FrozenLake-v1 --env-kwargs foo:bar".split(), "takes no keyword argument foo"),
    (["--device", "tpu"], "--device 'tpu' is not a device"),
    (["--learning-rate", "inf"], "--learning-rate inf is out of range"),
    (["--hidden", "0"], "--hidden 0 is out of range"),
    (["--no-critic"], "--no-critic was renamed: write --critic none"),
    (["--actor-backups", "8"], "--actor-backups 8 backs the critic up over the env's whole tables"),
    ("--estimator exact --lookahead 4".split(), "--estimator exact with --lookahead 4"),
    (["--threads", "0"], "--threads 0 is out of range: it must be an integer >= 1"),
    (["ppo", "--gae-lambda", "5"], "--gae-lambda 5.0 is out of range"),
    (["--gae-lambda", "0.9"], "--gae-lambda is a flag of ppo, and this run trains pathwise"),
    (["ppo", "--clip-coef", "-1"], "--clip-coef -1.0 is out of range"),
    (["--max-grad-norm", "nan"], "--max-grad-norm nan is out of range"),
    (["--save-every", "-1"], "--save-every -1 is out of range"),
    ("--tau-min 5 --tau 1".split(), "--tau-min 5.0 must be at most --tau 1.0"),
    (["--horizon", "100000"], "lower --num-envs or --horizon"),
    (["--num-envs", "50000000"], "lower --num-envs or --horizon"),
    (["--eval-episodes", "20000000"], "lower --eval-episodes"),
    (["--num-envs", "5e7"], "--num-envs"),
    (["--algo", "nope"], "--algo"),
    (["--run-name", "../../x"], "would write outside --runs-dir"),
    (["--env", "BINARY"], "is not a text file"),
    (["--resume", "NOWHERE"], "no checkpoint at"),
    (["--wandb-mode", "online"], "wandb finds no credentials"),
]


@pytest.mark.parametrize(("flags", "says"), BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_flags_exit_2_with_one_line_and_write_nothing(flags, says, tmp_path, capsys, monkeypatch):
    """In process, for speed; tests/test_train.py runs bad flags through the script too."""
    import train

    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no wandb credentials
    for k in [k for k in os.environ if k.startswith("WANDB_") or k == "NETRC"]:
        monkeypatch.delenv(k)
    binary = tmp_path / "map.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    flags = [str(binary) if f == "BINARY" else str(tmp_path / "nowhere") if f == "NOWHERE" else f for f in flags]
    runs = tmp_path / "runs"
    assert train.main([*TINY, "--runs-dir", str(runs), *flags]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert says in err
    assert not runs.exists(), "nothing is written before validation passes"


# --------------------------------------------------------------------------- wandb that can't be reached
@pytest.fixture
def silent_server():
    """A local port that accepts connections and never answers: a network that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    conns, stop = [], threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for c in conns:
        c.close()
    server.close()


@pytest.mark.parametrize("mode", ["auto", "online"])
def test_wandb_with_a_key_but_no_network_is_one_line_in_bounded_time(mode, tmp_path, silent_server):
    env = clean_env(tmp_path / "home") | {
        "WANDB_API_KEY": "0123456789" * 4,
        "WANDB_BASE_URL": silent_server,
        "WANDB_INIT_TIMEOUT": "3",
    }
    runs = tmp_path / "runs"
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "train.py", *TINY, "--wandb-mode", mode, "--runs-dir", str(runs), "--run-name", "r"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.time() - t0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < 40, f"{elapsed:.0f} s"  # 3 s of init timeout; no wait for wandb at exit
    if mode == "auto":  # one line, then the run goes on offline
        assert proc.returncode == 0, proc.stderr
        assert "could not start an online run" in proc.stderr and "logging offline instead" in proc.stderr
        assert (runs / "r" / "final_eval.json").exists()
        # The offline run holds every logged step, those logged while the online start hung too.
        steps = [h["global_step"] for h in wandb_history(runs / "r")]
        assert steps and steps[-1] == 4096
    else:  # asked for online: one line, exit 2, no run left behind
        assert proc.returncode == 2
        assert_one_line_error(proc.stderr)
        assert "--wandb-mode online: wandb could not start" in proc.stderr
        assert not (runs / "r").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_wandb_starts_is_one_line(sig, tmp_path, silent_server):
    env = clean_env(tmp_path / "home") | {
        "WANDB_API_KEY": "0123456789" * 4,
        "WANDB_BASE_URL": silent_server,
        "WANDB_INIT_TIMEOUT": "30",
    }
    run_dir = tmp_path / "runs" / "r"
    proc = start(
        [*TINY, "--wandb-mode", "online", "--runs-dir", str(tmp_path / "runs"), "--run-name", "r"],
        tmp_path / "home",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: (run_dir / "wandb").exists(), what="wandb to start")
    time.sleep(1.0)
    proc.send_signal(sig)
    t0 = time.time()
    out, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 15, "the exit waited for wandb's init timeout (30 s)"
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.strip()] == ["interrupted while starting; nothing was trained"]
    assert not run_dir.exists()  # a run that never started leaves nothing behind


def test_no_output_is_lost_when_stdout_is_a_file(tmp_path):
    # The plain happy path keeps its closing line (say() only swallows a closed pipe).
    out = tmp_path / "log.txt"
    with open(out, "w") as f:
        proc = subprocess.run(
            [
                sys.executable,
                "train.py",
                *TINY,
                "--wandb-mode",
                "disabled",
                "--runs-dir",
                str(tmp_path / "runs"),
                "--run-name",
                "r",
            ],
            cwd=ROOT,
            env=clean_env(tmp_path / "home"),
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("done: 4096 steps")
    assert os.path.getsize(tmp_path / "runs" / "r" / "checkpoint.pt") > 0
