"""Metrics to three sinks: a local JSONL file (`agent.plot` reads it), TensorBoard event files in
the run directory (`tensorboard --logdir runs` shows a run live, no account needed), and wandb.

wandb gets the metrics directly rather than by syncing the TensorBoard files: that works the same
offline (`wandb sync` uploads later) and keeps wandb's own types (videos) and step axis."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from agent.run.wandb_process import new_run_id as _new_run_id

METRICS_FILE = "metrics.jsonl"


INIT_TIMEOUT_S = 15.0  # how long wandb.init may take before a run goes on without it (WANDB_INIT_TIMEOUT)


class WandbError(ValueError):
    """wandb could not start as asked (--wandb-mode online); the message is one line."""


def has_wandb_credentials() -> bool:
    """Whether wandb will find credentials, by its own sources: WANDB_API_KEY,
    WANDB_IDENTITY_TOKEN_FILE, or a .netrc entry for the server it talks to (WANDB_BASE_URL or its
    default). No network is used."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    netrc_files = [os.environ["NETRC"]] if os.environ.get("NETRC") else ["~/.netrc", "~/_netrc"]
    if not any(Path(f).expanduser().exists() for f in netrc_files):
        return False  # no file wandb reads a login from: known without importing wandb (0.7 s)
    import wandb

    host = os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth  # wandb's own .netrc reader
    except ImportError:  # a wandb without it: the same file, read by the standard library
        import netrc
        from urllib.parse import urlparse

        try:
            return netrc.netrc().authenticators(urlparse(host).hostname or host) is not None
        except (OSError, netrc.NetrcParseError):
            return False
    try:
        return read_netrc_auth(host=host) is not None
    except Exception:  # noqa: BLE001 (a malformed entry: let wandb.init say what is wrong)
        return True


def resolve_wandb_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    return "online" if has_wandb_credentials() else "offline"


class _WandbProcess:
    """The process `agent/run/wandb_process.py` that wandb runs in, shared by a training process's
    runs (one per --num-seeds member): requests go to its stdin, its answers are read by a thread
    into `answers`, by run key."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("wandb_process.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Its lines reach the user through this process: a pipe it held itself would keep a
            # reader of this process's output waiting until wandb's process is done.
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C at a terminal reaches training only, which finishes the runs
        )
        self.answers: dict[str, dict] = {}
        self.lost = False  # the process has ended (its answers are all read)
        self.changed = threading.Condition()
        self.open: set[str] = set()  # runs asked for and not yet finished
        self.closed = False  # asked to end: a later run needs a new process
        threading.Thread(target=self._read, name="wandb-answers", daemon=True).start()
        threading.Thread(target=self._say, name="wandb-lines", daemon=True).start()

    def _say(self) -> None:
        for line in self.proc.stderr:
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):  # a closed stderr: nobody to tell
                pass

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            with self.changed:
                self.answers.setdefault(answer["key"], {}).update(answer)
                self.changed.notify_all()
        with self.changed:
            self.lost = True
            self.changed.notify_all()

    def send(self, request: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(request, default=_plain) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):  # it has ended: what it would have said is in its answers
            pass

    def close(self) -> None:
        """No more requests: the process finishes what it was asked and ends (its runs are written
        by then; what remains is wandb's own shutdown, which nothing here waits for)."""
        self.closed = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def answer(self, key: str, *fields: str, wait: bool = True) -> dict:
        """The answers for `key` once one of `fields` is among them (or the process has ended);
        without `wait`, whatever has come so far. The wait is in short steps, so Ctrl-C is not held
        up meanwhile."""
        with self.changed:
            while wait and not self.lost and not any(f in self.answers.get(key, {}) for f in fields):
                self.changed.wait(timeout=0.1)
            return dict(self.answers.get(key, {}))


_process: _WandbProcess | None = None


def _wandb_process() -> _WandbProcess:
    global _process
    if _process is None or _process.closed or _process.proc.poll() is not None:
        _process = _WandbProcess()
    return _process


class RunLogger:
    """One run's metric sink. `global_step` is the x-axis everywhere.

    wandb runs in a process of its own (`agent.run.wandb_process`), started when the logger starts:
    its import, start and logging (seconds of Python work) then take another core instead of half
    of training's. Rows logged before it is up wait there. wandb never stops a run: its start is
    bounded (INIT_TIMEOUT_S), and in auto mode a failure to go online (no network, a refused key)
    is one line, then the run logs offline. An explicit --wandb-mode online that can't start raises
    `WandbError` from `start(wait_for_wandb=True)`, before training."""

    _keys = itertools.count()

    def __init__(self, cfg, run_dir: Path, *, wandb_id: str | None = None, resume_step: int | None = None) -> None:
        self.run_dir = run_dir
        self.mode = resolve_wandb_mode(cfg.wandb_mode)
        self.file = None
        self._key = str(next(self._keys))
        self._wandb: _WandbProcess | None = None
        # The wandb run's id, chosen here (a resumed run's is its own), so that a checkpoint can
        # record it without waiting for wandb's start.
        self._run_id = None if self.mode == "disabled" else (wandb_id or _new_run_id())
        self._init = None
        if self.mode != "disabled":
            self._init = {
                "op": "init",
                "key": self._key,
                "id": self._run_id,
                "mode": self.mode,
                "asked": cfg.wandb_mode,
                "resuming": wandb_id is not None,
                "timeout": float(os.environ.get("WANDB_INIT_TIMEOUT", INIT_TIMEOUT_S)),
                "kwargs": {
                    "project": cfg.wandb_project,
                    "entity": cfg.wandb_entity,
                    "group": cfg.wandb_group,
                    "tags": list(cfg.tags) or None,
                    "name": run_dir.name,
                    "config": cfg.to_dict(),
                    "dir": str(run_dir),
                },
            }
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: on resume TensorBoard drops the events a killed run wrote after its checkpoint.
        self.tb = SummaryWriter(str(run_dir), flush_secs=5, purge_step=None if resume_step is None else resume_step + 1)

    def _begin(self) -> None:
        """Ask wandb's process for this run (once)."""
        if self._init is not None:
            self._wandb = _wandb_process()
            self._wandb.open.add(self._key)
            self._wandb.send(self._init)
            self._init = None

    def _send(self, request: dict) -> None:
        self._begin()
        if self._wandb is not None:
            self._wandb.send({**request, "key": self._key})

    def start(self, *, wait_for_wandb: bool = False) -> RunLogger:
        """Open metrics.jsonl and start wandb; with `wait_for_wandb`, wait for it and raise what
        stopped it."""
        self._begin()
        if wait_for_wandb and self._wandb is not None:
            answer = self._wandb.answer(self._key, "started", "error")
            if "started" not in answer:
                raise WandbError(answer.get("error", f"--wandb-mode {self.mode}: wandb's process ended"))
        if self.file is None:
            self.file = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")  # noqa: SIM115 (open for the run)
        return self

    @property
    def wandb_id(self) -> str | None:
        """The wandb run's id (None when disabled). Offline it is known from the start; online, a
        start that fails goes on offline under a new id, so this waits for the start."""
        if self.mode == "online" and self._wandb is not None:
            return self._wandb.answer(self._key, "started", "error").get("id", self._run_id)
        return self._run_id

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.start()
        row = {"global_step": step, **{k: v for k, v in metrics.items() if _is_number(v)}}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        # One event holding every scalar, as a Summary may: add_scalar writes an event per key,
        # which at --num-seeds 8 is seconds of a run.
        self.tb.file_writer.add_summary(_scalars_summary({k: v for k, v in row.items() if k != "global_step"}), step)
        self._send({"op": "log", "row": {**metrics, "global_step": step}})

    def log_video(self, key: str, frames, step: int, fps: int = 8) -> None:
        """An episode's frames (H, W, 3) as a GIF: a file `videos/KEY-STEP.gif` in the run
        directory, in TensorBoard's images tab and in wandb."""
        gif = _gif_bytes(frames, fps)
        path = self.run_dir / "videos" / f"{key.replace('/', '-')}-{step}.gif"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(gif)
        self.tb.file_writer.add_summary(_gif_summary(key, gif, frames[0].shape), step)
        self._send({"op": "video", "name": key, "path": str(path), "step": step})

    def finish(self, exit_code: int = 0) -> None:
        """Close the files and the wandb run, waiting for wandb to have written it all, except
        for a failed or interrupted run whose wandb is still starting: that one is closed (as
        failed) by wandb's process on its own once its start is over."""
        if self.file is not None:
            self.file.close()
        self.tb.close()
        if self._wandb is None:
            self._init = None
            return
        wandb, self._wandb = self._wandb, None
        wandb.send({"op": "finish", "key": self._key, "exit_code": exit_code})
        wandb.open.discard(self._key)
        if exit_code == 0 or wandb.answer(self._key, wait=False):
            wandb.answer(self._key, "finished")
        if not wandb.open:  # the last run of this process's wandb
            wandb.close()


def _plain(value: Any) -> Any:
    """A value JSON has no type for, as wandb would log it: a numpy or torch scalar as its number."""
    return value.item() if hasattr(value, "item") else str(value)


def _gif_bytes(frames, fps: int) -> bytes:
    """Frames (H, W, 3) uint8 -> a looping GIF, written by imageio (the [plots] extra)."""
    import io

    import imageio.v2 as imageio

    buf = io.BytesIO()
    imageio.mimsave(buf, frames, format="GIF", duration=1000 / fps, loop=0)
    return buf.getvalue()


def _gif_summary(tag: str, gif: bytes, shape: tuple[int, ...]):
    """A TensorBoard image summary holding an animated GIF of frames of `shape` (H, W, 3):
    TensorBoard shows it playing."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    image = Summary.Image(height=shape[0], width=shape[1], colorspace=3, encoded_image_string=gif)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def _scalars_summary(scalars: dict[str, float]):
    """A TensorBoard summary of scalars, one value per tag (what add_scalar writes for one)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    return Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in scalars.items()])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir} has no {METRICS_FILE}; pass a run directory written by train.py")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
