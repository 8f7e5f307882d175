"""The run logger: metrics.jsonl rows, what it drops, picking the wandb mode, and real offline wandb
runs of train.py read back."""

from __future__ import annotations

import json
import math
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from conftest import TINY, rows, run_train

from agent.run.checkpoint import load_checkpoint
from agent.run.config import TrainConfig
from agent.run.logger import METRICS_FILE, RunLogger, has_wandb_credentials, read_metrics, resolve_wandb_mode


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    """A HOME with no ~/.netrc and no WANDB_API_KEY."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    return tmp_path


def test_metrics_jsonl_rows(tmp_path):
    logger = RunLogger(TrainConfig(wandb_mode="disabled"), tmp_path)
    logger.log({"charts/episodic_return": 0.5, "losses/policy_loss": -1.25, "charts/episodes": 3}, 512)
    logger.log({"eval/success_rate": 1.0}, 1024)
    logger.finish()
    assert read_metrics(tmp_path) == [
        {"global_step": 512, "charts/episodic_return": 0.5, "losses/policy_loss": -1.25, "charts/episodes": 3},
        {"global_step": 1024, "eval/success_rate": 1.0},
    ]
    assert logger.wandb_id is None


def test_non_finite_and_non_numeric_values_are_skipped(tmp_path):
    logger = RunLogger(TrainConfig(wandb_mode="disabled"), tmp_path)
    logger.log({"a": math.nan, "b": math.inf, "c": -math.inf, "d": True, "e": "text", "f": None, "ok": 2.5}, 7)
    logger.finish()
    text = (tmp_path / METRICS_FILE).read_text()
    assert json.loads(text) == {"global_step": 7, "ok": 2.5}
    assert "NaN" not in text and "Infinity" not in text  # strict JSON readers choke on those


def test_a_resumed_run_appends(tmp_path):
    for step in (1, 2):
        logger = RunLogger(TrainConfig(wandb_mode="disabled"), tmp_path)
        logger.log({"x": float(step)}, step)
        logger.finish()
    assert [r["global_step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_read_metrics_without_a_file(tmp_path):
    with pytest.raises(ValueError, match=METRICS_FILE):
        read_metrics(tmp_path)


@pytest.mark.parametrize("mode", ["online", "offline", "disabled"])
def test_explicit_modes_pass_through(mode, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode(mode) == mode


def test_auto_without_credentials_is_offline(no_credentials):
    assert not has_wandb_credentials()
    assert resolve_wandb_mode("auto") == "offline"


def test_auto_with_an_api_key_is_online(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"


def test_auto_with_a_netrc_login_is_online(no_credentials):
    netrc = no_credentials / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    netrc.chmod(0o600)  # netrc refuses a password file others can read
    assert resolve_wandb_mode("auto") == "online"


def test_auto_with_a_netrc_for_another_host_is_offline(no_credentials):
    netrc = no_credentials / ".netrc"
    netrc.write_text("machine example.com\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    assert resolve_wandb_mode("auto") == "offline"


def test_a_netrc_for_the_server_wandb_base_url_names_counts(no_credentials, monkeypatch):
    # A self-hosted wandb server: the credentials are those of its host, as wandb itself reads them.
    netrc = no_credentials / ".netrc"
    netrc.write_text("machine wandb.example.org\n  login user\n  password " + "y" * 40 + "\n")
    netrc.chmod(0o600)
    assert resolve_wandb_mode("auto") == "offline"  # wandb's default server has no entry
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert resolve_wandb_mode("auto") == "online"


def test_tensorboard_event_files_hold_the_metrics_a_run_logs(tmp_path):
    """A real train.py run, read back with TensorBoard's own reader: the CleanRL names at
    increasing global steps, and an evaluation GIF in the images tab."""
    import subprocess
    import sys

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run(
        [
            sys.executable,
            *(
                "train.py --env empty --num-envs 64 --horizon 8 --total-timesteps 8192 "
                "--eval-every 2048 --eval-episodes 8 --capture-video --wandb-mode "
                "disabled --no-progress --runs-dir"
            ).split(),
            str(tmp_path),
            "--run-name",
            "r",
        ],
        cwd=root,
        env=env | {"HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    events = EventAccumulator(str(tmp_path / "r"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    for tag in (
        "charts/episodic_return",
        "charts/SPS",
        "charts/normalized_score",
        "losses/value_loss",
        "eval/exact_success_rate",
    ):
        assert tag in tags["scalars"], tag
    steps = [e.step for e in events.Scalars("charts/episodic_return")]
    assert len(steps) >= 3 and steps == sorted(steps) and len(set(steps)) == len(steps)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").open()]
    for tag in tags["scalars"]:  # the same rows and values as metrics.jsonl (TensorBoard keeps float32)
        logged = [(r["global_step"], r[tag]) for r in rows if tag in r]
        assert [e.step for e in events.Scalars(tag)] == [step for step, _ in logged], tag
        assert [e.value for e in events.Scalars(tag)] == pytest.approx([v for _, v in logged], rel=1e-6, abs=1e-30)
    gif = events.Images("eval/episode")[-1]
    assert gif.encoded_image_string[:6] == b"GIF89a" and gif.step == 8192
    assert (tmp_path / "r" / "videos" / "eval-episode-8192.gif").read_bytes() == gif.encoded_image_string


def test_capture_video_without_imageio_is_refused_before_anything_is_written(tmp_path):
    from conftest import assert_one_line_error

    hide = "import sys, train; sys.modules['imageio'] = None; sys.argv[0] = 'train.py'; raise SystemExit(train.main())"
    proc = run_train(
        [*TINY, "--capture-video", "--runs-dir", str(tmp_path / "runs")], tmp_path / "home", script=("-c", hide)
    )
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr)
    assert "--capture-video needs imageio" in proc.stderr and "[plots]" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux to drive the terminal UI")
def test_wandb_leet_opens_an_offline_run_of_ours(tmp_path):
    """`wandb leet runs/<run>/wandb` (wandb's terminal dashboard) shows a run train.py logged
    offline: driven in a real terminal by tmux, its screen names the run and our metrics."""
    import os
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")} | {"HOME": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            *(
                "train.py --env empty --num-envs 64 --horizon 8 --total-timesteps 4096 "
                "--eval-every 2048 --eval-episodes 8 --wandb-mode offline --no-progress "
                "--runs-dir"
            ).split(),
            str(tmp_path / "runs"),
            "--run-name",
            "leet_run",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    wandb = str(Path(sys.executable).with_name("wandb"))
    session = f"leet{os.getpid()}"
    tmux = ["tmux", "-L", session]  # a private server: nothing of the user's is touched
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "160",
            "-y",
            "45",
            f"HOME={tmp_path} {wandb} leet {tmp_path / 'runs' / 'leet_run' / 'wandb' / 'latest-run'}",
        ],
        check=True,
        env=env,
    )
    try:
        screen = ""
        for _ in range(60):
            time.sleep(0.5)
            screen = subprocess.run([*tmux, "capture-pane", "-t", session, "-p"], capture_output=True, text=True).stdout
            if "charts/episodic_return" in screen and "Name: leet_run" in screen:
                break
        assert "Name: leet_run" in screen and "Project: gumbel-gridworld" in screen, screen
        assert "charts/episodic_return" in screen and "charts/normalized_" in screen, screen
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


# ------------------------------------------------------------------ wandb, for real: train.py runs
def read_wandb_records(path: Path) -> list[bytes]:
    """The records of a `.wandb` transaction log (LevelDB log format, which wandb-core writes and
    wandb 0.31 no longer reads from Python): a 7-byte header `:W&B` + magic + version, then
    32 KiB blocks of chunks `crc32 (4) | length (2) | type (1) | data`, a record split over
    FIRST/MIDDLE/LAST chunks when it crosses a block."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    block, pos, out, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, "corrupt chunk in the wandb log"
        if kind == 1:  # FULL
            out.append(chunk)
        elif kind == 2:  # FIRST
            pending = chunk
        elif kind == 3:  # MIDDLE
            pending += chunk
        elif kind == 4:  # LAST
            out.append(pending + chunk)
    return out


def wandb_history(run_dir: Path) -> list[dict]:
    from wandb.proto import wandb_internal_pb2

    logs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 1, f"expected one offline run under {run_dir}/wandb, found {logs}"
    history = []
    for raw in read_wandb_records(logs[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            history.append(
                {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
            )
    return history


def test_wandb_offline_run_can_be_read_back(tmp_path):
    workdir = tmp_path
    home = workdir / "wandb_home"
    proc = run_train(
        [
            *TINY,
            *"--capture-video --wandb-mode offline --runs-dir".split(),
            str(workdir / "runs"),
            "--run-name",
            "offline",
        ],
        home,
    )
    assert proc.returncode == 0, proc.stderr
    history = wandb_history(workdir / "runs" / "offline")
    returns = [(h["global_step"], h["charts/episodic_return"]) for h in history if "charts/episodic_return" in h]
    assert returns, "no charts/episodic_return in the wandb history"
    assert all(math.isfinite(v) for _, v in returns)
    steps = [h["global_step"] for h in history]
    assert steps == sorted(steps) and steps[-1] == 4096
    assert any("eval/success_rate" in h for h in history)
    # The local metrics file and wandb got the same numbers.
    local = {
        r["global_step"]: r["charts/episodic_return"]
        for r in rows(workdir / "runs" / "offline")
        if "charts/episodic_return" in r
    }
    assert dict(returns) == pytest.approx(local)
    # --capture-video's GIFs reach wandb as files (raw frames would need moviepy, which wandb does
    # not install): the same bytes as the run directory's videos/.
    videos = [
        (h["global_step"], h["eval/episode/path"]) for h in history if h.get("eval/episode/_type") == "video-file"
    ]
    assert [step for step, _ in videos] == [512, 1024, 2048, 4096], history
    (offline,) = (workdir / "runs" / "offline" / "wandb").glob("offline-run-*")
    # The id the checkpoint records (chosen before wandb started) is the wandb run's own.
    run_id = load_checkpoint(workdir / "runs" / "offline")["wandb_id"]
    assert offline.name.endswith("-" + run_id)
    # A resumed run goes on in the same wandb run.
    proc = run_train(["--resume", str(workdir / "runs" / "offline"), "--total-timesteps", "4608"], home)
    assert proc.returncode == 0, proc.stderr
    runs = sorted((workdir / "runs" / "offline" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith("-" + run_id) for r in runs), runs
    assert (offline / "files" / videos[-1][1]).read_bytes() == (
        workdir / "runs" / "offline" / "videos" / "eval-episode-4096.gif"
    ).read_bytes()


def test_wandb_auto_without_credentials_goes_offline_with_a_hint(tmp_path):
    workdir = tmp_path
    home = workdir / "auto_home"  # empty: no ~/.netrc, and clean_env drops WANDB_API_KEY
    proc = run_train(
        [
            *TINY,
            *"--total-timesteps 1024 --eval-every 0 --wandb-mode auto --runs-dir".split(),
            str(workdir / "runs"),
            "--run-name",
            "auto",
        ],
        home,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    hints = [ln for ln in proc.stderr.splitlines() if "wandb sync" in ln]
    assert len(hints) == 1 and "offline" in hints[0], proc.stderr
    assert list((workdir / "runs" / "auto" / "wandb").glob("offline-run-*/run-*.wandb"))
