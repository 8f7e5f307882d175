"""Metrics to three sinks: a local JSONL file (`agent.plot` reads it), TensorBoard event files in
the run directory (`tensorboard --logdir runs` shows a run live, no account needed), and wandb.

wandb gets the metrics directly rather than by syncing the TensorBoard files: that works the same
offline (`wandb sync` uploads later) and keeps wandb's own types (videos) and step axis."""

from __future__ import annotations

import json
import math
import os
import secrets
import string
import sys
import threading
from pathlib import Path
from typing import Any

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


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:200]


_abandoned = False  # a wandb start failed or was interrupted in this process


def wandb_holds_exit() -> bool:
    """Whether a wandb start failed or was interrupted and wandb's threads still run: they keep the
    interpreter from exiting until their requests time out (half a minute on a hung network)."""
    return _abandoned and any(t.name.startswith("wandb-") and t.is_alive() for t in threading.enumerate())


def _abandon() -> None:
    global _abandoned
    _abandoned = True


_START_THREAD = "wandb-start"


class RunLogger:
    """One run's metric sink. `global_step` is the x-axis everywhere.

    wandb never stops a run: its start is bounded (INIT_TIMEOUT_S), and in auto mode a failure
    to go online (no network, a refused key) is one line, then the run logs offline. An explicit
    --wandb-mode online that can't start raises `WandbError` from `start(wait_for_wandb=True)`.

    wandb starts in a background thread at the first `log` (after the first update), so its import
    and start (about 2 s of a run's start-up otherwise, benchmarks/startup.py) don't hold up
    training: rows logged before it is up are kept and handed to it once it is. `start()` opens the
    local files before the first `log`; with `wait_for_wandb` (an explicit --wandb-mode online) it
    starts wandb and waits for it, so a failure comes before training."""

    def __init__(self, cfg, run_dir: Path, *, wandb_id: str | None = None, resume_step: int | None = None) -> None:
        self.run_dir = run_dir
        self.mode = resolve_wandb_mode(cfg.wandb_mode)
        self.wandb = None
        self.file = None
        self._error: BaseException | None = None
        self._thread = None
        self._pending: list[dict[str, Any]] = []  # rows logged before wandb was up
        # The wandb run's id, chosen here (a resumed run's is its own), so that a checkpoint can
        # record it without waiting for wandb's start.
        self._run_id = None if self.mode == "disabled" else (wandb_id or _new_run_id())
        self._wandb_args = (cfg, wandb_id is not None) if self.mode != "disabled" else None
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: on resume TensorBoard drops the events a killed run wrote after its checkpoint.
        self.tb = SummaryWriter(str(run_dir), flush_secs=5, purge_step=None if resume_step is None else resume_step + 1)

    def _start_wandb(self, cfg, resuming: bool) -> None:
        try:
            try:
                self.wandb = self._init(cfg, self.mode, resuming)
            except Exception as e:  # noqa: BLE001 (wandb raises many kinds)
                _abandon()
                if cfg.wandb_mode != "auto" or self.mode != "online":
                    raise WandbError(
                        f"--wandb-mode {cfg.wandb_mode}: wandb could not start ({_reason(e)}); check "
                        "`wandb login` and the network, or use --wandb-mode offline"
                    ) from None
                print(f"wandb: could not start an online run ({_reason(e)}); logging offline instead", file=sys.stderr)
                self.mode = "offline"
                if not resuming:  # wandb's service still holds the failed run's id
                    self._run_id = _new_run_id()
                self.wandb = self._init(cfg, "offline", resuming)
            if self.mode == "offline" and cfg.wandb_mode == "auto":
                print(
                    f"wandb: logging offline; upload later with `wandb sync {self.run_dir}/wandb/offline-run-*`",
                    file=sys.stderr,
                )
        except BaseException as e:  # noqa: BLE001 (handed to the main thread by _join())
            _abandon()
            self._error = e

    def start(self, *, wait_for_wandb: bool = False) -> RunLogger:
        """Open metrics.jsonl; with `wait_for_wandb`, first start wandb and wait for it (raising what
        stopped it)."""
        if wait_for_wandb:
            self._begin()
            self._join()
        if self.file is None:
            self.file = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")  # noqa: SIM115 (open for the run)
        return self

    def _begin(self) -> None:
        """Start wandb in the background (once)."""
        if self._wandb_args is not None:
            self._thread = threading.Thread(
                target=self._start_wandb, args=self._wandb_args, name=_START_THREAD, daemon=True
            )
            self._wandb_args = None
            self._thread.start()

    def _join(self) -> None:
        """Start wandb if it isn't yet, wait for it, and raise what stopped it."""
        self._begin()
        if self._thread is not None:
            while self._thread.is_alive():  # a timed join, so Ctrl-C is not held up meanwhile
                self._thread.join(timeout=0.1)
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        while self._pending and self.wandb is not None:
            self.wandb.log(self._pending.pop(0))

    def _init(self, cfg, mode: str, resuming: bool):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", INIT_TIMEOUT_S))
        run = wandb.init(
            project=cfg.wandb_project,
            entity=cfg.wandb_entity,
            group=cfg.wandb_group,
            tags=list(cfg.tags) or None,
            name=self.run_dir.name,
            config=cfg.to_dict(),
            dir=str(self.run_dir),
            mode=mode,
            id=self._run_id,
            resume="allow" if resuming else None,
            settings=wandb.Settings(init_timeout=timeout),
        )
        run.define_metric("global_step")
        run.define_metric("*", step_metric="global_step")
        return run

    @property
    def wandb_id(self) -> str | None:
        """The wandb run's id (None when disabled). Offline it is known from the start; online, a
        start that fails goes on offline under a new id, so this waits for the start."""
        if self.mode == "online":
            self._join()
        return self._run_id

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.start()
        row = {"global_step": step, **{k: v for k, v in metrics.items() if _is_number(v)}}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        # One event holding every scalar, as a Summary may: add_scalar writes an event per key,
        # which at --num-seeds 8 is seconds of a run.
        self.tb.file_writer.add_summary(_scalars_summary({k: v for k, v in row.items() if k != "global_step"}), step)
        self._begin()
        if self._thread is not None and self._thread.is_alive():
            self._pending.append({**metrics, "global_step": step})
            return
        self._join()
        if self.wandb is not None:
            self.wandb.log({**metrics, "global_step": step})

    def log_video(self, key: str, frames, step: int, fps: int = 8) -> None:
        """An episode's frames (H, W, 3) as a GIF: a file `videos/KEY-STEP.gif` in the run
        directory, in TensorBoard's images tab and in wandb."""
        gif = _gif_bytes(frames, fps)
        path = self.run_dir / "videos" / f"{key.replace('/', '-')}-{step}.gif"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(gif)
        self.tb.file_writer.add_summary(_gif_summary(key, gif, frames[0].shape), step)
        self._join()
        if self.wandb is not None:
            import wandb

            # A file, not raw frames: wandb encodes raw frames with moviepy, which it does not install.
            self.wandb.log({key: wandb.Video(str(path), format="gif"), "global_step": step})

    def finish(self, exit_code: int = 0) -> None:
        if self.file is not None:
            self.file.close()
        self.tb.close()
        if exit_code != 0 and self.wandb is None and self.mode != "disabled":
            _abandon()  # stopped while wandb was starting (or after it failed)
        if exit_code != 0 and self._thread is not None and self._thread.is_alive():
            return  # a failed or interrupted run does not wait out wandb's start (a daemon thread)
        try:
            self._join()
        except BaseException:  # noqa: BLE001 (wandb never started: nothing of it to finish)
            return
        if self.wandb is not None:
            self.wandb.finish(exit_code=exit_code)
            self.wandb = None


def _new_run_id() -> str:
    """A fresh wandb run id, as wandb makes them (8 of a-z0-9), from the OS's randomness: runs
    seeded alike must not share one."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


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
